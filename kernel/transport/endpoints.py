"""Where the kernel's sockets live: the transport seam between processes.

A ``Transport`` names the endpoint of each socket a process binds (the
supervisor's control socket, each gateway's worker socket). The kernel's own
processes are on one host and ``IpcTransport`` puts unix sockets in a private
directory; for workers on other hosts (``backend.workers.remote``) the same
two sockets also bind ``tcp://`` with CurveZMQ (``kernel.transport.curve``).

The directory is the kernel's user's alone (mode 0700). When workers run as other OS users
(``kernel.os_users``), ``share_ipc`` opens it to one group, the runtime group those workers get, and
to nobody else: the directory becomes ``root:<group>`` mode 2710 (the group may pass through, not list
or add; setgid: a socket bound in it later gets the group) and each socket ``root:<group>`` mode 0770
(connecting takes write permission on the socket file). Other local users cannot pass through the
directory, so they cannot reach a socket in it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from typing import Protocol

#: the socket directory shared with a group: it may pass through (not list or add); setgid
SHARED_DIRECTORY_MODE = 0o2710
#: a socket shared with a group: it may connect
SHARED_SOCKET_MODE = 0o770


class Transport(Protocol):
    """Endpoint addresses for the kernel's sockets, and their clean-up."""

    def endpoint(self, name: str) -> str:
        """The address socket ``name`` binds and its peers connect to (``ipc://…``, ``tcp://…``)."""
        ...

    def close(self) -> None:
        """Remove whatever the endpoints left behind (socket files)."""
        ...


class IpcTransport:
    """Unix-domain sockets in a directory private to this kernel (``kernel-<pid>-*`` in the temp dir).

    Directories of kernels that died without cleaning up (``kill -9``) are removed first.
    """

    def __init__(self) -> None:
        base = tempfile.gettempdir()
        for name in os.listdir(base):
            parts = name.split("-")
            if len(parts) == 3 and parts[0] == "kernel" and parts[1].isdigit() and not pid_alive(int(parts[1])):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        self.directory = tempfile.mkdtemp(prefix=f"kernel-{os.getpid()}-")

    def endpoint(self, name: str) -> str:
        return f"ipc://{os.path.join(self.directory, name)}"

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def share_ipc(endpoints: Iterable[str], gid: int) -> None:
    """Let group ``gid`` connect to the ``ipc://`` sockets among ``endpoints`` (see the module doc).

    Idempotent. A socket not bound yet gets the group when it is (the directory is setgid); its binder
    makes it group-writable with its umask (``kernel.os_users.GATEWAY_UMASK``). Other endpoints are left alone.
    """
    paths = [e.removeprefix("ipc://") for e in endpoints if e.startswith("ipc://")]
    for directory in dict.fromkeys(os.path.dirname(p) for p in paths):
        os.chown(directory, -1, gid)
        os.chmod(directory, SHARED_DIRECTORY_MODE)
    for path in paths:  # after the directory: a socket bound since has the group already
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                continue
        except FileNotFoundError:
            continue
        os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, SHARED_SOCKET_MODE)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
