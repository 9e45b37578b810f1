"""``python -m kernel.worker``: started by the supervisor, never by hand; composes one plugin's worker.

Started with ``--zygote <fd>`` it is the worker zygote instead (``kernel.zygote``): it imports all
this and forks workers, each then runs ``run``, its spec on its stdin as a spawned one.

Boot (``boot``: the plugin, its services, its init), then serve (``connection``:
the links to gateways and supervisor; ``dispatch``: the requests). The root
config is the one the supervisor loaded; a changed one arrives as a
``ConfigUpdate`` and reaches the plugin's ``subscribe`` callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from functools import partial

import zmq

import kernel_services
from kernel import plugin_paths
from kernel import zygote as fork_server
from kernel.config import Config, LiveConfig, validate_plugin_config
from kernel.core_services import RootConfig
from kernel.errors import BootError, ConfigError
from kernel.launch import PARENT_ENV, WorkerSpec, apply_config_update, die_with_parent, start_child
from kernel.logs import configure_from_config
from kernel.plugin import BackendPlugin
from kernel.registry import remember_installed
from kernel.worker.boot import boot
from kernel.worker.connection import RemoteLink, WorkerConnection
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


async def serve(spec: WorkerSpec, remote: RemoteLink | None = None) -> int:
    """Boot the plugin on the supervisor's config, then serve until told to stop (``remote``: a worker on
    another host, ``kernel.worker.remote``)."""
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
    try:
        root_path = plugin_paths.path_of(spec.plugin_id, spec.settings.gateway.mount)  # as the gateway routes
    except ConfigError as exc:  # the getPath of an installed package
        raise BootError(str(exc)) from None
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
        before_shutdown=partial(plugin.lifecycle, "before_shutdown"),
        remote=remote,
    )
    plugin.router.on_change = link.update_policies
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    link.connect(ctx)
    try:
        if not await link.serve():
            return 1
        await link.finish_before_shutdown()  # run while requests flowed, unless this worker alone stops
        await dispatcher.drain(spec.settings.workers.shutdown_grace)
        if remote is not None:
            link.leave()
        await plugin.lifecycle("shutdown")
        return 0
    finally:
        link.close()
        ctx.term()


def zygote(fd: int) -> int:
    """``--zygote <fd>``: preload, then fork workers on request over the socket ``fd`` (``kernel.zygote``).

    Returns only in a forked worker, once it has run: the zygote itself exits in ``serve``.
    """
    die_with_parent(int(os.environ[PARENT_ENV]))
    remember_installed()  # one scan of the installed packages for every worker forked
    fork_server.preload([kernel_services])
    fork_server.serve(socket.socket(fileno=fd))
    return run()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--zygote"]:
        sys.exit(zygote(int(sys.argv[2])))
    sys.exit(run())
