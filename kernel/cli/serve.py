"""``kernel serve``: load and check the config and the installed plugins, then run the supervisor.

This is where the config is loaded and validated, once per kernel: the kernel's
settings, and every credential verifier built from it (so a bad static token
stops start-up with the key named). The supervisor owns it from here. The plugins
are known from the discovery report (``kernel.discovery``): data only, their code
never runs in this process; each worker imports its own plugin.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from kernel.cli.common import config_paths, installed, no_config_file
from kernel.config import Config, ConfigError, ReloadingConfig
from kernel.discovery.parent import Installed
from kernel.os_users import check_worker_users
from kernel.registry import split_failures
from kernel.settings import Settings, read_settings
from services.database_ownership import give_sqlite_directory


def load_checked(paths: list[str], reg: Installed) -> tuple[ReloadingConfig, Settings]:
    """Load the config and check everything the kernel itself reads, so mistakes stop startup readably."""
    config = ReloadingConfig(paths, validate=_check_settings)
    settings = read_settings(config.current)
    check_credentials(reg, config.current)
    check_worker_users(settings.workers, reg.plugins)  # workers under OS users of their own can start
    return config, settings


def _check_settings(config: Config) -> None:
    read_settings(config)  # a reload that breaks the kernel's settings is refused


def check_credentials(reg: Installed, config: Config) -> None:
    """Build every credential verifier once: a bad ``backend.auth`` entry raises ``ConfigError``."""
    reg.manager.hook.kernel_credential_verifiers(config=config)


def cmd_serve(args: argparse.Namespace) -> int:
    from kernel.logs import configure, configure_from_config
    from kernel.supervisor import Supervisor, startup_failure_message

    if args.dev:
        os.environ["KERNEL_ENV"] = "development"
    configure(os.environ.get("KERNEL_LOG_LEVEL", "info"))
    reg = installed()
    paths = config_paths(args.config)
    if not paths:
        logging.getLogger("kernel").warning("%s; running on the defaults", no_config_file())
    try:
        config, settings = load_checked(paths, reg)
        configure_from_config(config, secret_paths=reg.secret_paths)
    except ConfigError as exc:
        print(f"kernel: config error: {exc}", file=sys.stderr)
        return 2
    fatal, tolerated = split_failures(reg.failures, settings.boot_policy, settings.module_boot_policy)
    if fatal:
        print(startup_failure_message([str(f) for f in fatal]), file=sys.stderr)
        return 1
    failed: dict[str, str] = {}
    for f in tolerated:
        skipped = f.module and settings.module_boot_policy(f.name, f.module) == "continue"
        key = "onPluginModuleBootFailure" if skipped else "onPluginBootFailure"
        logging.getLogger("kernel").error("%s (continuing: %s is 'continue')", f, key)
        if not skipped:
            failed[f.name] = str(f)
    supervisor = Supervisor(
        settings,
        config,
        [p for p in reg.plugins.values() if p.id not in failed],
        reg.provider_eps,
        dev=os.environ.get("KERNEL_ENV") == "development",
        failed=failed,
        prepare_data=give_sqlite_directory,  # a plugin with an OS user of its own owns its SQLite files
    )
    return asyncio.run(supervisor.run())  # stdlib loop: the supervisor needs SIGCHLD
