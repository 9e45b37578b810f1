"""A bubblewrap sandbox per worker (``backend.workers.sandbox``, per plugin ``plugins.<id>.sandbox``).

Bubblewrap (Debian's ``bubblewrap``, the sandbox Flatpak uses) starts the worker in namespaces of its own:

- the filesystem read-only, with a private ``/tmp``; the kernel's config files cannot be opened
  (``/dev/null`` over each, on a mount without devices: ``EACCES``), the SQLite directory shared by the plugins is an empty tmpfs but for the plugin's own
  directory (``<directory>/<pluginId>``), bound writable; the kernel's socket directory is bound
  read-only (connecting to a socket needs no write on its filesystem), the metrics directory writable,
  and the worker's code (the interpreter's prefix, the import path, the folders of the kernel's packages
  and of the plugin's modules: ``import_roots``) read-only, for a checkout or a site below ``/tmp``;
- a pid namespace: no other worker, the gateways or the supervisor can be seen (``/proc``) or signalled;
- ipc and uts namespaces, every capability dropped (also when the kernel runs as root), a new session
  (no terminal to push keystrokes into);
- no network at all for a plugin whose ``plugins.<id>.network`` is false (the kernel's sockets are unix
  sockets: they still work).

What it does not hide: other files the kernel's user may read (run the workers as OS users of their own
for those, ``kernel.os_users``). A sandboxed worker is spawned, never forked by the zygote (bubblewrap
must ``exec``), so it costs a fresh interpreter's start and memory.

Inside, the worker's parent is the sandbox's init (pid 1), its own pid 2, the same in every sandbox: its
metrics files take a number the launcher gives instead (``METRICS_ID_ENV``). The supervisor watches the
``bwrap`` process (its exit is the worker's) and signals the worker itself, found below it in ``/proc``.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel.config import ConfigError
from kernel.metrics.files import ID_ENV
from kernel.settings.workers import WorkerSettings
from kernel.supervisor.sources import places_of

#: the worker's metrics files are named by this number, not its pid (the same in every pid namespace)
METRICS_ID_ENV = ID_ENV
#: metrics ids of sandboxed workers start above any pid Linux hands out (``pid_max`` is at most 2^22)
METRICS_ID_BASE = 1 << 23
#: the worker's parent in the sandbox: its init
SANDBOX_PARENT = 1


@functools.cache
def unavailable() -> str | None:
    """Why no sandbox can be made on this machine (``None``: it can), tried once per process."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    try:
        done = subprocess.run(
            [bwrap, *_namespaces(network=True), "--ro-bind", "/", "/", "--proc", "/proc", "--", "true"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit code {done.returncode}"
        return f"bwrap cannot make a sandbox here ({why}); unprivileged user namespaces may be refused"
    return None


def check_sandbox(workers: WorkerSettings, plugin_ids: Iterable[str]) -> None:
    """A sandbox asked for but impossible here stops start-up (a ``ConfigError`` naming the key and why):
    an operator who asked for it is never left believing it is in force."""
    wanted = sorted(p for p in plugin_ids if workers.sandboxed(p))
    why = unavailable() if wanted else None
    if why is not None:
        key = "backend.workers.sandbox" if workers.sandbox else f"backend.workers.plugins.{wanted[0]}.sandbox"
        raise ConfigError(f"{key} asks for a sandbox ({', '.join(wanted)}), but {why}")


def _namespaces(*, network: bool) -> list[str]:
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--cap-drop", "ALL", "--die-with-parent"]
    return [*args, "--new-session"] if network else [*args, "--new-session", "--unshare-net"]


@dataclass(frozen=True)
class Sandbox:
    """What one worker's sandbox shows (absolute paths)."""

    #: bound read-only again over the private /tmp (the kernel's socket directory, the import path)
    readable: Sequence[str] = ()
    #: bound writable (the plugin's own data directory, the metrics directory)
    writable: Sequence[str] = ()
    #: files that cannot be opened (the kernel's config files)
    hidden_files: Sequence[str] = ()
    #: directories that look empty (the SQLite directory the plugins share)
    hidden_directories: Sequence[str] = ()
    network: bool = True

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this sandbox."""
        bwrap = shutil.which("bwrap") or "bwrap"
        args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for path in self.readable:  # what the private /tmp hid, before the hiding: it never shows a hidden path
            args += ["--ro-bind", path, path]
        for directory in self.hidden_directories:
            args += ["--tmpfs", directory]
        for file in self.hidden_files:
            args += ["--ro-bind", "/dev/null", file]
        for path in self.writable:
            args += ["--bind", path, path]
        return [*args, *_namespaces(network=self.network), "--", *command]


def import_roots(entry_points: Iterable[str]) -> list[str]:
    """Where the worker's code lives: the folders of the kernel's packages and of each entry point's
    top-level module (``name = module:attr``), found without importing any of them. A checkout or a site
    below ``/tmp`` stays visible over the sandbox's private ``/tmp`` (an editable install imports from it)."""
    tops = {
        "kernel",
        "kernel_services",
        *(e.partition("=")[2].strip().partition(":")[0].split(".")[0] for e in entry_points),
    }
    roots: list[str] = [*sys.path]
    for top in sorted(t for t in tops if t):
        roots.extend(p if os.path.isdir(p) else os.path.dirname(p) for p in places_of(top))
    return [r for r in dict.fromkeys(os.path.abspath(r) for r in roots if r) if os.path.isdir(r)]


def config_files(paths: Sequence[str]) -> list[str]:
    """The config files among ``paths`` that exist, absolute (links resolved: a bind needs the real file)."""
    return [str(Path(p).resolve()) for p in paths if Path(p).is_file()]


class SandboxedProcess:
    """A worker run by ``bwrap``: watched through the ``bwrap`` process, signalled directly.

    ``pid`` is the worker's own (on this host), once it can be found below ``bwrap``; until then ``bwrap``'s.
    """

    def __init__(self, proc: subprocess.Popen[bytes], metrics_id: int) -> None:
        self._proc = proc
        self._worker: int | None = None
        #: the number its metrics files are named by (``METRICS_ID_ENV``)
        self.metrics_id = metrics_id

    @property
    def pid(self) -> int:
        if self._worker is None:
            self._worker = _grandchild(self._proc.pid)
        return self._worker if self._worker is not None else self._proc.pid

    def exit_code(self) -> int | None:
        return self._proc.poll()

    def terminate(self) -> None:
        """SIGTERM to the worker (``bwrap`` would die of it, and the sandbox with it, at once)."""
        worker = self.pid
        if worker == self._proc.pid or self._proc.poll() is not None:
            self._proc.terminate()
            return
        try:
            os.kill(worker, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self._proc.kill()  # the sandbox dies with it (--die-with-parent)

    def wait(self) -> int:
        return self._proc.wait()


def _grandchild(pid: int) -> int | None:
    """The worker below ``bwrap`` ``pid``: the first child of its first child (the sandbox's init)."""
    for _ in range(2):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        if not children:
            return None
        pid = int(children[0])
    return pid
