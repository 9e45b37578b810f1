"""The supervisor's side of the worker zygote (``kernel.zygote``): start it, ask it for workers, replace it.

``Zygote`` starts ``python -m kernel.worker --zygote`` once, on the kernel's first worker, after the
kernel's environment is final (the metrics directory). ``fork`` sends it a worker's ``ForkRequest``
and reads back the pid, waiting (it blocks the supervisor's loop) for the zygote's preload the first
time only, then a few milliseconds per fork. The worker is the supervisor's own child
(``CLONE_PARENT``): ``ForkedProcess`` reaps it with ``waitpid`` like ``subprocess`` would.

When the zygote dies (``check``, on every ``SIGCHLD`` and heartbeat tick), a new one is started at
once; workers already running are not its children and never notice. Past ``RESTART_LIMIT`` deaths
within ``RESTART_WINDOW`` seconds, or when it refuses or fails to answer, ``fork`` answers ``None``
and the launcher spawns the worker instead: a zygote problem costs memory, never a worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

from kernel.launch import PARENT_ENV
from kernel.supervisor.restarts import RestartPolicy
from kernel.zygote import Forked, ForkRequest, Ready, Refused, receive, send

log = logging.getLogger("kernel")
#: seconds the zygote may take to import everything (its first answer)
READY_TIMEOUT = 30.0
#: seconds one fork may take
FORK_TIMEOUT = 10.0
RESTART_LIMIT = 3
RESTART_WINDOW = 60.0
#: room in the zygote's command line for a forked worker's (``python -m kernel.worker <worker id>``)
TITLE_ROOM = 256


class ForkedProcess:
    """A worker the zygote forked: a child of this process all the same, watched and stopped by its pid."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._code: int | None = None

    @property
    def pid(self) -> int:
        return self._pid

    def exit_code(self) -> int | None:
        if self._code is None:
            self._reap(os.WNOHANG)
        return self._code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self) -> int:
        while self._code is None:
            self._reap(0)
        return self._code

    def _signal(self, sig: int) -> None:
        if self.exit_code() is None:  # not reaped yet: the pid is still ours, never a stranger's
            os.kill(self._pid, sig)

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self._pid, flags)
        except ChildProcessError:  # reaped by someone else (cannot happen unless waited on with -1)
            self._code = 0
            return
        if pid == self._pid:
            self._code = os.waitstatus_to_exitcode(status)


class Zygote:
    """The zygote process and the socket to it; ``fork`` starts one worker, ``check`` replaces a dead zygote."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready: Ready | None = None
        self._deaths = RestartPolicy(RESTART_LIMIT, RESTART_WINDOW, 0.0, 0.0)
        self._output: Callable[[], int] | None = None
        #: given up on: every worker is spawned from now on
        self.disabled = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, output: Callable[[], int] | None = None) -> None:
        """Start the zygote (it imports in the background until the first ``fork`` waits for it);
        ``output`` makes the write end of the pipe its stdout and stderr go to (none: the kernel's)."""
        if output is not None:
            self._output = output
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out = self._output() if self._output is not None else None
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "kernel.worker", "--zygote", str(theirs.fileno()), " " * TITLE_ROOM],
                env={**os.environ, PARENT_ENV: str(os.getpid())},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:
            ours.close()
            self._give_up(f"cannot start it: {exc}")
            return
        finally:
            theirs.close()
            if out is not None:
                os.close(out)
        self._sock = ours
        self._ready = None

    def fork(self, request: ForkRequest, stdin: int, output: int = -1) -> int | None:
        """The pid of a new worker made as ``request`` says, ``stdin`` (a pipe's read end) its stdin,
        ``output`` (a pipe's write end; -1: the zygote's) its stdout and stderr; ``None``: the zygote
        cannot, spawn it instead."""
        self.check()
        if self.disabled or self._sock is None:
            return None
        try:
            if self._ready is None:
                self._sock.settimeout(READY_TIMEOUT)
                first = receive(self._sock)
                if not isinstance(first, Ready):
                    raise OSError("it exited before it was ready")
                self._ready = first
                log.debug("worker zygote ready (pid %d, %d modules)", first.pid, first.modules)
            self._sock.settimeout(FORK_TIMEOUT)
            send(self._sock, request, (stdin, output) if output >= 0 else (stdin,))
            answer = receive(self._sock)
        except OSError as exc:  # a timeout too
            self._failed(f"no answer ({exc or 'timed out'})")
            return None
        if isinstance(answer, Forked):
            return answer.pid
        why = answer.error if isinstance(answer, Refused) else "it hung up"
        self._failed(why)
        return None

    def check(self) -> None:
        """Replace the zygote if it died (at once; after too many deaths, give up on it)."""
        if self.disabled or self._proc is None:
            return
        code = self._proc.poll()
        if code is None:
            return
        self._close_socket()
        self._proc = None
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if self._deaths.died():
            self._give_up(f"it died {len(self._deaths.deaths)} times within {RESTART_WINDOW:g}s (last: {how})")
            return
        log.warning("the worker zygote died (%s); starting a new one (running workers are not affected)", how)
        self.start()

    def close(self) -> None:
        """Stop the zygote: it exits when its socket closes."""
        self._close_socket()
        if self._proc is not None:
            try:
                self._proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _failed(self, why: str) -> None:
        """A zygote that misbehaves is stopped; the next ``check`` starts another (this worker is spawned)."""
        log.error("the worker zygote failed to fork a worker: %s; spawning it instead", why)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _give_up(self, why: str) -> None:
        self.disabled = True
        log.error("worker zygote: %s; spawning every worker from now on (backend.workers.zygote)", why)

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
