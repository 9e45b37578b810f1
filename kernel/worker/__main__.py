"""``python -m kernel.worker``: started by the supervisor, never by hand; composes runtime and services."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import msgspec

from kernel.core_services import RootConfig
from kernel.plugin import BackendPlugin
from kernel.procutil import die_with_parent, install_event_loop_policy
from kernel.worker.runtime import BootError, WorkerSpec, main
from services.config import ReloadingConfig, validate_plugin_config
from services.logger import configure, configure_from_config, install_crash_handlers

log = logging.getLogger("kernel.worker")


def run() -> int:
    die_with_parent(int(os.environ["KERNEL_PARENT_PID"]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    spec = msgspec.json.decode(os.environ["KERNEL_WORKER_SPEC"], type=WorkerSpec)
    configure(os.environ.get("KERNEL_LOG_LEVEL", "info"))
    install_crash_handlers(spec.plugin_id)
    install_event_loop_policy()
    try:
        return asyncio.run(_serve(spec))
    except BootError as exc:
        log.error("plugin '%s' failed to start: %s", spec.plugin_id, exc, extra={"fields": {"plugin": spec.plugin_id}})
        return 3
    except Exception:  # whatever init raised, log it tagged with the plugin
        log.exception("plugin '%s' failed to start", spec.plugin_id, extra={"fields": {"plugin": spec.plugin_id}})
        return 3


async def _serve(spec: WorkerSpec) -> int:
    """Compose the worker: a reloading config, logging and secrets from it, then the runtime."""
    config = ReloadingConfig(spec.config_paths)

    def prepare(cfg: RootConfig, plugin: BackendPlugin) -> list[str]:
        configure_from_config(cfg, {plugin.id: plugin.config_schema})
        if plugin.config_schema is None:
            return []
        return validate_plugin_config(cfg, plugin.id, plugin.config_schema)

    await config.start()
    try:
        return await main(spec, config, prepare)
    finally:
        await config.stop()


if __name__ == "__main__":
    sys.exit(run())
