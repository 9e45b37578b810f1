"""The default database service's SQLite files, made the own of a plugin's OS user (``backend.workers.plugins.<id>.user``).

Before a worker of a plugin with a user of its own starts, the supervisor (as root) makes the
plugin's SQLite directory (``<directory>/<pluginId>``) that user's, mode 0700, and moves in the
files a worker of the plugin left in ``<directory>`` before it had a user. ``kernel serve`` hands
``give_sqlite_directory`` to the supervisor: the kernel itself knows nothing of where a service
keeps its files. A sandboxed plugin (``backend.workers.sandbox``) has a directory of its own too: the
sandbox hides ``<directory>`` but for it (``sqlite_directories``).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Protocol

from kernel.api import ConfigError, RootConfig
from kernel_services.database_common import read_settings, sqlite_directory

log = logging.getLogger("kernel")


class WorkerIdentity(Protocol):
    """The OS user a plugin's workers run as (``kernel.os_users.WorkerIdentity``)."""

    @property
    def name(self) -> str: ...
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...


_SQLITE_FILES = (".sqlite", ".sqlite-wal", ".sqlite-shm", ".sqlite.lock")


def sqlite_directories(config: RootConfig, plugin_id: str) -> tuple[str, str] | None:
    """The SQLite directory the plugins share and ``plugin_id``'s own in it, absolute, its own made if missing
    (mode 0700); ``None``: its database is not in SQLite files (or its config is bad: the worker says so)."""
    try:
        own = sqlite_directory(read_settings(config, plugin_id), plugin_id)
    except (ValueError, ConfigError):
        return None
    if own is None:
        return None
    own = own.resolve()
    own.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(own.parent), str(own)


def give_sqlite_directory(who: WorkerIdentity, config: RootConfig, plugin_id: str) -> None:
    """The plugin's SQLite directory (``<directory>/<pluginId>``), owned by ``who``, mode 0700; the files a
    worker of the plugin left in ``<directory>`` before it had a user of its own are moved in."""
    try:
        directory = sqlite_directory(read_settings(config, plugin_id), plugin_id)
    except (ValueError, ConfigError):  # the worker reports a bad database config itself
        return
    if directory is None:  # in memory, or PostgreSQL
        return
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)  # never a link planted there
        try:
            os.fchown(fd, who.uid, who.gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        _move_older_files(directory, plugin_id, who)
    except OSError as exc:
        log.error(
            "cannot make the SQLite directory %s of plugin '%s' the own of OS user '%s': %s",
            directory,
            plugin_id,
            who.name,
            exc,
        )


def _move_older_files(directory: Path, plugin_id: str, who: WorkerIdentity) -> None:
    """``<directory>/../<pluginId>.sqlite`` (and its WAL, shared memory and lock files) into ``directory``,
    once: given to ``who`` before the move, while no other user can touch them."""
    if (directory / f"{plugin_id}.sqlite").exists():
        return
    for suffix in _SQLITE_FILES:
        old = directory.parent / f"{plugin_id}{suffix}"
        if stat.S_ISREG(_mode(old)):
            os.chown(old, who.uid, who.gid, follow_symlinks=False)
            os.chmod(old, 0o600)
            old.rename(directory / old.name)
            if suffix == ".sqlite":
                log.info(
                    "plugin '%s' runs as OS user '%s': its SQLite file moved to %s", plugin_id, who.name, directory
                )


def _mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return 0
