"""``kernel serve``: load and check the config and the installed plugins, then run the supervisor.

This is where the config is loaded and validated, once per kernel: the kernel's
settings, and every credential verifier built from it (so a bad static token
stops start-up with the key named). The supervisor owns it from here. The plugins
are known from the discovery report (``kernel.plugin_scan``): data only, their code
never runs in this process; each worker imports its own plugin.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from kernel.cli.common import config_arguments, config_paths, installed, no_config_file
from kernel.config import Config, ConfigError, ReloadingConfig
from kernel.hooktypes import RootConfigOptions
from kernel.os_users import check_worker_users
from kernel.plugin_scan.parent import Installed
from kernel.registry import split_failures
from kernel.settings import Settings, read_settings
from kernel.supervisor.sandbox import check_sandbox
from kernel.transport.curve import load_pair
from kernel_services.database_ownership import give_sqlite_directory, sqlite_directories
from kernel_services.plugin_logins import PluginLogins


def load_checked(
    paths: list[str], reg: Installed, options: RootConfigOptions | None = None
) -> tuple[ReloadingConfig, Settings]:
    """Load the config and check everything the kernel itself reads, so mistakes stop startup readably."""
    remote = (options or RootConfigOptions()).remote
    interval = remote.reload_interval_seconds if remote is not None else None
    config = ReloadingConfig(paths, validate=_check_settings, remote_interval=interval)
    settings = read_settings(config.current)
    check_credentials(reg, config.current)
    check_worker_users(settings.workers, reg.plugins)  # workers under OS users of their own can start
    check_sandbox(settings.workers, reg.plugins)  # a sandbox asked for can be made here
    if settings.workers.remote is not None:  # the kernel's CURVE key pair is readable
        load_pair(settings.workers.remote.server_key)
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
    options: RootConfigOptions = reg.manager.hook.kernel_root_config_options() or RootConfigOptions()
    paths = config_paths(args.config if options.argv is None else config_arguments(options.argv))
    if not paths:
        logging.getLogger("kernel").warning("%s; running on the defaults", no_config_file())
    try:
        config, settings = load_checked(paths, reg, options)
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
    logins = PluginLogins()
    supervisor = Supervisor(
        settings,
        config,
        [p for p in reg.plugins.values() if p.id not in failed],
        reg.provider_eps,
        dev=os.environ.get("KERNEL_ENV") == "development",
        failed=failed,
        prepare_data=give_sqlite_directory,  # a plugin with an OS user of its own owns its SQLite files
        make_logins=logins.make,  # a PostgreSQL role and a Redis user per plugin (pluginRoles, pluginUsers)
        drop_logins=logins.drop,
        data_paths=sqlite_directories,  # what a sandbox shows of the SQLite files (backend.workers.sandbox)
    )
    return asyncio.run(supervisor.run())  # stdlib loop: the supervisor needs SIGCHLD
