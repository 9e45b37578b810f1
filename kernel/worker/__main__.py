"""``python -m kernel.worker``: started by the supervisor, never by hand; composes one plugin's worker.

Boot (``boot``: the plugin, its services, its init), then serve (``connection``:
the links to gateways and supervisor; ``dispatch``: the requests). The root
config is the one the supervisor loaded; a changed one arrives as a
``ConfigUpdate`` and reaches the plugin's ``subscribe`` callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from functools import partial

import zmq

from kernel.config import Config, LiveConfig, validate_plugin_config
from kernel.core_services import RootConfig
from kernel.errors import BootError
from kernel.launch import WorkerSpec, apply_config_update, start_child
from kernel.logs import configure_from_config
from kernel.plugin import BackendPlugin
from kernel.worker.boot import boot
from kernel.worker.connection import WorkerConnection
from kernel.worker.dispatch import Dispatcher

log = logging.getLogger("kernel.worker")


def run() -> int:
    spec = start_child(WorkerSpec)
    try:
        return asyncio.run(serve(spec))
    except BootError as exc:
        log.error("plugin '%s' failed to start: %s", spec.plugin_id, exc, extra={"fields": {"plugin": spec.plugin_id}})
        return 3
    except Exception:  # whatever init raised, log it tagged with the plugin
        log.exception("plugin '%s' failed to start", spec.plugin_id, extra={"fields": {"plugin": spec.plugin_id}})
        return 3


async def serve(spec: WorkerSpec) -> int:
    """Boot the plugin on the supervisor's config, then serve until told to stop."""
    config = LiveConfig(Config.from_snapshot(spec.config))

    def prepare(cfg: RootConfig, plugin: BackendPlugin) -> list[str]:
        configure_from_config(cfg, {plugin.id: plugin.config_schema})
        if plugin.config_schema is None:
            return []
        return validate_plugin_config(cfg, plugin.id, plugin.config_schema)

    plugin = await boot(
        spec.plugin_id,
        spec.entry_points,
        config,
        prepare,
        module_policy=partial(spec.settings.module_boot_policy, spec.plugin_id),
    )
    root_path = f"{spec.settings.gateway.mount.rstrip('/')}/{spec.plugin_id}"
    app = plugin.app
    if spec.settings.tracing.enabled:  # the handler in a span, the child of the gateway's
        from kernel.worker.tracing import HandlerSpanMiddleware

        app = HandlerSpanMiddleware(app, plugin_id=spec.plugin_id)
    dispatcher = Dispatcher(app, spec.plugin_id, root_path, dev=spec.dev)
    link = WorkerConnection(
        spec,
        dispatcher,
        policies=plugin.router.policies,
        on_config=partial(apply_config_update, config),
        health=plugin.health(),
    )
    plugin.router.on_change = link.update_policies
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    link.connect(ctx)
    try:
        if not await link.serve():
            return 1
        await dispatcher.drain(spec.settings.workers.shutdown_grace)
        await plugin.lifecycle("before_shutdown")
        await plugin.lifecycle("shutdown")
        return 0
    finally:
        link.close()
        ctx.term()


if __name__ == "__main__":
    sys.exit(run())
