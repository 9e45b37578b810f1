"""CurveZMQ on the kernel's ``tcp://`` links: key files, socket options, and the gate that admits keys.

Keys are pyzmq's own certificate files (``zmq.auth.create_certificates``): ``NAME.key`` holds a
public key, ``NAME.key_secret`` the pair (mode 0600). A public certificate may carry
``plugins = a,b`` in its metadata: a worker with that key may join only as a worker of those
plugins (``kernel keys generate --plugin``); without it, as a worker of the plugin it declares.

``AllowedKeys`` is the directory of public certificates a kernel admits (``allowedKeys``), re-read
whenever a file in it changes (checked at each handshake: rotation needs no restart). ``KeyGate`` is
pyzmq's ZAP authenticator (one thread per process) admitting exactly those keys; a refused key is
logged with its prefix and the peer's address. Every ``tcp://`` socket of the kernel is a CURVE
server (``bind_curve``) or client (``ClientKeys.apply``): a plain-text peer never completes a
handshake. ZeroMQ heartbeats on these links notice a dead network within ``heartbeatTimeout``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from kernel.errors import ConfigError

log = logging.getLogger("kernel.curve")
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
#: the ZAP domain of the kernel's CURVE sockets
DOMAIN = b"kernel"
#: milliseconds between ZeroMQ heartbeats on a tcp link
PING_MS = 1000


def fingerprint(z85: str | bytes) -> str:
    """How a key is named in messages: the first 8 characters of its Z85 form."""
    text = z85.decode("ascii", "replace") if isinstance(z85, bytes) else z85
    return f"{text[:8]}…"


def generate(directory: str | Path, name: str, plugins: list[str] | None = None) -> tuple[Path, Path]:
    """Write ``directory/name.key`` and ``name.key_secret`` (mode 0600); ``plugins`` bind the key to them."""
    folder = Path(directory)
    public, secret = folder / f"{name}{PUBLIC_SUFFIX}", folder / f"{name}{SECRET_SUFFIX}"
    for path in (public, secret):
        if path.exists():
            raise ConfigError(f"{path} exists already; remove it first or choose another --name")
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"plugins": ",".join(plugins)} if plugins else None
    old = os.umask(0o077)  # the secret is never readable by others, not even for a moment
    try:
        zmq.auth.create_certificates(str(folder), name, metadata)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    if metadata:  # pyzmq writes metadata in the secret file only: the public one carries it to the kernel
        text = public.read_text().replace("metadata\n", f"metadata\n    plugins = {metadata['plugins']}\n", 1)
        public.write_text(text)
    return public, secret


def load_public(path: str | Path) -> bytes:
    """The public key in certificate ``path`` (a ``.key`` or ``.key_secret`` file), Z85."""
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the CURVE certificate {path}: {exc}") from None
    return public


def load_pair(path: str | Path) -> tuple[bytes, bytes]:
    """The key pair in certificate ``path`` (a ``.key_secret`` file), Z85."""
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the CURVE certificate {path}: {exc}") from None
    if secret is None:
        raise ConfigError(f"{path} holds no secret key (use the NAME{SECRET_SUFFIX} file)")
    return public, secret


def _plugins_of(path: Path) -> frozenset[str] | None:
    """The ``plugins`` metadata of a certificate, if it has one."""
    in_metadata = False
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw.startswith((" ", "\t")):
            in_metadata = line == "metadata"
        elif in_metadata and line.partition("=")[0].strip() == "plugins":
            value = line.partition("=")[2].strip().strip('"')
            return frozenset(p.strip() for p in value.split(",") if p.strip())
    return None


@dataclass(frozen=True)
class AllowedKey:
    """A public key the kernel admits: the file it came from, and the plugins it may serve (``None``: any)."""

    name: str
    plugins: frozenset[str] | None

    def allows(self, plugin_id: str) -> bool:
        return self.plugins is None or plugin_id in self.plugins


class AllowedKeys:
    """The public certificates (``*.key``) in ``directory``, re-read when a file in it changes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._stamp: object = None
        self.keys: dict[str, AllowedKey] = {}
        self.refresh()

    def refresh(self) -> None:
        try:
            files = sorted(p for p in self.directory.iterdir() if p.name.endswith(PUBLIC_SUFFIX))
            stamp = [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files]
        except OSError as exc:
            if self._stamp != "missing":
                log.error("cannot read allowedKeys directory %s: %s; no worker key is admitted", self.directory, exc)
            self._stamp, self.keys = "missing", {}
            return
        if stamp == self._stamp:
            return
        keys: dict[str, AllowedKey] = {}
        for path in files:
            try:
                keys[load_public(path).decode()] = AllowedKey(path.name, _plugins_of(path))
            except (ConfigError, OSError) as exc:
                log.error("allowedKeys: skipping %s: %s", path, exc)
        if self._stamp is not None:
            log.info("allowedKeys %s changed: %d key(s) admitted now", self.directory, len(keys))
        self._stamp, self.keys = stamp, keys

    def lookup(self, z85: str) -> AllowedKey | None:
        """The allowed key ``z85``, after looking at the directory again (cheap: one stat per file)."""
        self.refresh()
        return self.keys.get(z85)


class KeyGate(ThreadAuthenticator):
    """The ZAP handler of one process: CURVE clients whose key is in ``allowed`` pass, others are refused
    and logged (``who``: the socket's owner, in the message). Its User-Id is the client's Z85 key."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], allowed: AllowedKeys, who: str) -> None:
        super().__init__(ctx, log=logging.getLogger("kernel.curve.zap"))
        self.allowed = allowed
        self.who = who
        self._address = ""

    def start(self) -> None:
        super().start()
        self.configure_curve_callback(domain=DOMAIN.decode(), credentials_provider=self)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode(errors="replace") if len(msg) > 3 else "?"  # one request at a time
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        z85 = key.decode()
        if self.allowed.lookup(z85) is not None:
            return True
        log.error(
            "%s refused a connection from %s: CURVE key %s is not in allowedKeys (%s)",
            self.who, self._address, fingerprint(z85), self.allowed.directory,
        )  # fmt: skip
        return False


def _heartbeats(sock: zmq.Socket[bytes], timeout: float) -> None:
    sock.setsockopt(zmq.HEARTBEAT_IVL, PING_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(int(timeout * 1000), PING_MS))
    sock.setsockopt(zmq.HEARTBEAT_TTL, max(int(timeout * 1000), PING_MS))


def bind_curve(sock: zmq.Socket[bytes], endpoint: str, server: tuple[bytes, bytes], timeout: float) -> None:
    """Bind ``sock`` (already bound elsewhere in plain text, or not) to ``endpoint`` as a CURVE server.

    ZeroMQ takes a socket's security options when it binds: the endpoints bound before stay as they were.
    """
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, server[0])
    sock.setsockopt(zmq.CURVE_SECRETKEY, server[1])
    sock.setsockopt(zmq.ZAP_DOMAIN, DOMAIN)
    _heartbeats(sock, timeout)
    sock.bind(endpoint)


@dataclass(frozen=True)
class ClientKeys:
    """What a remote worker presents: the kernel's public key, and its own pair."""

    server: bytes
    public: bytes
    secret: bytes
    #: seconds without traffic after which ZeroMQ drops the link (and reconnects)
    timeout: float = 10.0

    @classmethod
    def load(cls, server_key: str | Path, key: str | Path, timeout: float = 10.0) -> ClientKeys:
        public, secret = load_pair(key)
        return cls(load_public(server_key), public, secret, timeout)

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE client of the kernel (before it connects)."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        _heartbeats(sock, self.timeout)


def peer_key(frame: zmq.Frame) -> str:
    """The Z85 public key of the CURVE peer that sent ``frame``; ``""`` over a plain (``ipc://``) link."""
    try:
        return str(frame.get("User-Id"))
    except zmq.ZMQError:
        return ""


class CurveServer:
    """One process's CURVE server side: the kernel's key pair (``serverKey``), and the gate admitting
    ``allowedKeys``, started on the socket's context at the first ``bind``."""

    def __init__(self, server_key: str | Path, allowed_keys: str | Path, timeout: float, who: str) -> None:
        self.pair = load_pair(server_key)
        self.allowed = AllowedKeys(allowed_keys)
        self.timeout = timeout
        self.who = who
        self.gate: KeyGate | None = None

    def bind(self, sock: zmq.Socket[bytes], endpoint: str) -> None:
        if self.gate is None:
            self.gate = KeyGate(sock.context, self.allowed, self.who)
            self.gate.start()
        bind_curve(sock, endpoint, self.pair, self.timeout)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.stop()
            self.gate = None
