"""Process helpers shared by the kernel's child processes."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (orphan protection)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
    if os.getppid() != expected_parent:  # the parent died before we asked
        os._exit(1)


def install_event_loop_policy(prefer_uvloop: bool = True) -> None:
    if prefer_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
