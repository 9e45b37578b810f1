"""The worker zygote: a fork server that imported the worker's shared code once, so a plugin costs only its own pages.

A fresh ``python -m kernel.worker`` imports the interpreter's standard library, starlette, msgspec,
zmq, the kernel's worker runtime and the core services before it runs one line of its plugin:
25-40 MB per process, the same pages in every worker. The zygote (``python -m kernel.worker --zygote``)
imports them once (``preload``), freezes them out of the garbage collector's reach (``gc.freeze``:
a collection in a worker then never writes to, and so never copies, the shared pages), and forks a
worker per request of the supervisor (``serve``). Plugin code is imported only after the fork, in
the worker, by ``kernel.worker.boot`` as in a spawned worker: the zygote imports the kernel
distribution's own modules and third-party libraries, never a plugin's package.

**Whose child a worker is.** The zygote forks with ``clone(CLONE_PARENT)``: the worker is born the
*supervisor's* child, its sibling, exactly like a worker the supervisor spawned. So nothing changes
for the supervisor: it reaps the worker with ``waitpid`` and reads its exit code, its pid cannot be
reused before it is reaped (signals never hit a stranger), ``PR_SET_PDEATHSIG`` in the worker names
the supervisor (``kernel.launch.die_with_parent``), and the zygote dying, or being replaced, does
nothing to the workers already running. The zygote has no children and reaps nothing.
The fork goes through CPython's own before/after-fork steps (``PyOS_BeforeFork`` and friends, as
``os.fork`` does: locks re-made, ``os.register_at_fork`` hooks run); glibc's ``pthread_atfork``
handlers are skipped, which is sound in a process that never started a thread (OpenSSL reseeds on
a changed pid by itself).

**No fork with threads or a loop.** The zygote is single-threaded and has no event loop nor zmq
context; before each fork it checks it still has one thread, else it refuses (the supervisor then
spawns the worker instead).

**What the worker becomes** (``ForkRequest``, all decided by the supervisor as for a spawned worker,
``kernel.launch.launch_of``): its environment, its OS user, group and supplementary groups
(``setgroups``, ``setresgid``, ``setresuid``, in that order, then dumpable again as after an exec),
its umask, signal dispositions back to their defaults, and a command line that reads
``python -m kernel.worker <worker id>`` for ``ps``. Its stdout and stderr are the write end of its
own log pipe, which the supervisor reads (``kernel.supervisor.logrelay``), and which comes with the
request after the stdin pipe. Its stdin is a pipe
from the supervisor, whose read end comes with the request (``SCM_RIGHTS``): the supervisor writes
the worker's spec (its secret, its routing id, its config) there once the worker exists, so the
zygote never holds one worker's secrets in memory that the next fork would copy into another.
Then it runs the worker's start-up (``kernel.launch.start_child``) as a spawned worker does.
Modules that read the environment at import time saw the kernel's environment, in the zygote.

The wire: length-prefixed msgpack messages on a Unix socket pair, ``Ready`` once the zygote has
preloaded, then one ``Forked`` or ``Refused`` per ``ForkRequest``. EOF on it stops the zygote.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import pkgutil
import signal
import socket
import struct
import sys
import threading
from collections.abc import Iterable
from importlib.metadata import entry_points
from types import ModuleType

import msgspec

#: what a worker imports before its plugin, besides the kernel's own modules (imported if installed)
THIRD_PARTY = (
    "asyncio",
    "uvloop",
    "msgspec",
    "zmq",
    "pluggy",
    "yaml",
    "starlette.applications",
    "starlette.routing",
    "starlette.responses",
    "starlette.requests",
    "starlette.middleware",
    "starlette.websockets",
    "aiohttp",
    "httpx",
    "aiosqlite",
    "sqlite3",
    "jwt",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.serialization",
    "prometheus_client",
    "jsonschema_rs",
    "croniter",
    "cachetools",
)
#: the distribution whose ``kernel.plugins`` entry points (hook providers, never plugins) the zygote imports
KERNEL_DISTRIBUTION = "kernel"
_ENTRY_POINT_GROUP = "kernel.plugins"  # kernel.registry.ENTRY_POINT_GROUP, without importing the registry here
_CLONE_PARENT = 0x00008000
_SIGCHLD = 17
_PR_SET_DUMPABLE = 4
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}
_HEADER = struct.Struct("!I")


class ForkRequest(msgspec.Struct, frozen=True, tag="fork"):
    """A worker to fork and who it runs as; the read end of its stdin pipe and the write end of its log pipe
    (its stdout and stderr) follow it (``SCM_RIGHTS``)."""

    env: dict[str, str]
    #: the command line ``ps`` shows for it, NUL-separated words
    title: str = ""
    uid: int = -1
    gid: int = -1
    groups: list[int] = []
    umask: int = -1


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    """The zygote has preloaded ``modules`` modules and waits for requests."""

    pid: int
    modules: int


class Forked(msgspec.Struct, frozen=True, tag="forked"):
    pid: int


class Refused(msgspec.Struct, frozen=True, tag="refused"):
    error: str


Message = ForkRequest | Ready | Forked | Refused
_decoder = msgspec.msgpack.Decoder(Message)


def send(sock: socket.socket, msg: Message, fds: tuple[int, ...] = ()) -> None:
    """Send ``msg``, and the file descriptors ``fds`` with it if any are given (``receive_fds`` takes them)."""
    data = msgspec.msgpack.encode(msg)
    sock.sendall(_HEADER.pack(len(data)) + data)
    if fds:
        socket.send_fds(sock, [b"F"], list(fds))


def receive_fds(sock: socket.socket, most: int = 2) -> list[int]:
    """The file descriptors sent with the message just received (``most`` at most); none if none came."""
    _, fds, _, _ = socket.recv_fds(sock, 1, most)
    return list(fds)


def receive(sock: socket.socket) -> Message | None:
    """The next message; ``None`` at EOF."""
    head = _read(sock, _HEADER.size)
    if head is None:
        return None
    body = _read(sock, _HEADER.unpack(head)[0])
    return None if body is None else _decoder.decode(body)


def _read(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def supported() -> bool:
    """Whether this machine can fork workers from a zygote (Linux on x86-64 or arm64)."""
    return sys.platform.startswith("linux") and os.uname().machine in _SYS_CLONE


# ---------------------------------------------------------------------------- the zygote


def preload(packages: Iterable[ModuleType]) -> int:
    """Import what every worker imports before its plugin, then freeze it; the number of modules loaded.

    ``packages``: the kernel's own packages to import whole (the core services); besides them, the
    ``THIRD_PARTY`` libraries and the kernel distribution's own hook providers. A module that cannot be
    imported (an optional dependency missing) is skipped: the worker that needs it reports it.
    """
    gc.disable()  # no collection while the imports allocate: they all survive anyway
    names = list(THIRD_PARTY)
    kernel_eps = [
        ep for ep in entry_points(group=_ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == KERNEL_DISTRIBUTION
    ]
    names += [ep.module for ep in kernel_eps]
    for package in packages:
        names += [m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # optional (asyncpg, opentelemetry): the worker that needs it says so
            continue
    gc.collect()
    gc.freeze()  # the survivors move to the permanent generation: never traversed, never written to
    return len(sys.modules)


def serve(sock: socket.socket) -> ForkRequest:  # one loop, every way a request can fail
    """The zygote's loop: answer each ``ForkRequest`` with a forked worker. Returns only in a forked worker,
    made what the request says (the caller then runs the worker); exits when the supervisor hangs up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    send(sock, Ready(os.getpid(), len(sys.modules)))
    while True:
        request = receive(sock)
        if request is None:
            sys.exit(0)
        if not isinstance(request, ForkRequest):
            continue
        fds = receive_fds(sock)
        stdin = fds[0] if fds else -1
        output = fds[1] if len(fds) > 1 else -1  # none: the zygote's own stdout and stderr
        try:
            if stdin < 0:
                send(sock, Refused("no stdin came with the request"))
                continue
            if threading.active_count() != 1:
                send(sock, Refused(f"the zygote has {threading.active_count()} threads: it forks only with one"))
                continue
            try:
                pid = _fork_sibling()
            except OSError as exc:
                send(sock, Refused(f"clone(CLONE_PARENT) failed: {exc}"))
                continue
            if pid == 0:
                sock.close()
                _become(request, stdin, output)
                return request
            send(sock, Forked(pid))
        finally:
            for fd in fds:
                os.close(fd)


def _fork_sibling() -> int:
    """``os.fork``, but the child is our parent's (``CLONE_PARENT``): 0 in the child, its pid in the zygote."""
    libc = ctypes.PyDLL(None, use_errno=True)  # keeps the GIL held across the call, like os.fork
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = libc.syscall(_SYS_CLONE[os.uname().machine], _CLONE_PARENT | _SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    errno = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(errno, os.strerror(errno))
    return int(pid)


def _become(request: ForkRequest, stdin: int, output: int = -1) -> None:
    """In the forked worker: its stdin, stdout and stderr, signals, OS identity, umask, environment and title."""
    try:
        os.dup2(stdin, 0)  # the caller closes ``stdin`` and ``output`` itself (in the worker too)
        if output >= 0:
            os.dup2(output, 1)
            os.dup2(output, 2)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as CPython sets it at start
        if request.uid >= 0:
            os.setgroups(request.groups)
            os.setresgid(request.gid, request.gid, request.gid)
            os.setresuid(request.uid, request.uid, request.uid)
            _set_dumpable()  # as after an exec: its own /proc files are its own (a uid change cleared it)
        if request.umask >= 0:
            os.umask(request.umask)
    except OSError as exc:  # cannot become who it must be: never run as someone else
        print(f"kernel: a forked worker cannot take its identity: {exc}", file=sys.stderr, flush=True)
        os._exit(126)
    os.environ.clear()
    os.environ.update(request.env)
    if request.title:
        _set_title(request.title)
    gc.enable()


def _set_dumpable() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def _set_title(title: str) -> None:
    """Write ``title`` over our command line (``/proc/self/cmdline``, what ``ps`` shows), as setproctitle does.

    The zygote's command line ends with a long blank argument to leave room; a title that does not fit
    is cut. Nothing is done where ``/proc`` does not say where the command line is.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49
    except (OSError, IndexError, ValueError):
        return
    size = end - start
    if size <= 1:
        return
    data = title.encode()[: size - 1]
    ctypes.memmove(start, data + b"\0" * (size - len(data)), size)
