"""Where the kernel's sockets live: the transport seam between processes.

A ``Transport`` names the endpoint of each socket a process binds (the
supervisor's control socket, each gateway's worker socket). Today every
process is on one host and ``IpcTransport`` puts unix sockets in a private
directory; a TCP transport (with CURVE keys) for workers on other hosts fits
the same two methods.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Protocol


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
            if len(parts) == 3 and parts[0] == "kernel" and parts[1].isdigit() and not _alive(int(parts[1])):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        self.directory = tempfile.mkdtemp(prefix=f"kernel-{os.getpid()}-")

    def endpoint(self, name: str) -> str:
        return f"ipc://{os.path.join(self.directory, name)}"

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
