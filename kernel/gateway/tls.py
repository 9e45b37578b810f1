"""``backend.https``: the gateway's TLS context, from the configured certificate or a generated one.

``certificate: {cert, key}`` takes PEM text (the reference system's form, usually ``$file: x.pem``)
or file paths. ``https: true`` uses a self-signed certificate made for development, as the
reference system does: ``var/tls/dev-cert.pem`` and ``dev-key.pem`` under the working directory,
made once (30 days, for ``localhost``, ``127.0.0.1``, ``::1`` and the host of ``backend.baseUrl``)
and made again when it has less than 5 days left. Gateway processes starting together take a
file lock, so they all serve the same certificate. ALPN offers ``h2`` when the server speaks
HTTP/2 (hypercorn), then ``http/1.1``.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from kernel.settings import HttpsSettings

log = logging.getLogger("kernel.gateway")
GENERATED_DIR = Path("var/tls")
_VALID_DAYS = 30
_RENEW_BEFORE = datetime.timedelta(days=5)


def server_context(https: HttpsSettings, *, alpn: Sequence[str], base_url: str | None = None) -> ssl.SSLContext:
    """The TLS context the gateway serves with (TLS 1.2 or later, as HTTP/2 requires)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.set_alpn_protocols(list(alpn))
    if https.certificate is None:
        cert, key = generated_certificate(GENERATED_DIR, _host_of(base_url))
        context.load_cert_chain(cert, key)
    else:
        with _as_file(https.certificate.cert) as cert, _as_file(https.certificate.key) as key:
            context.load_cert_chain(cert, key)
    return context


def _host_of(base_url: str | None) -> str:
    return (urlsplit(base_url).hostname or "localhost") if base_url else "localhost"


@contextmanager
def _as_file(value: str) -> Iterator[str]:
    """A path to ``value``: itself if it is not PEM text, else a private temporary file, removed after use."""
    if "-----BEGIN" not in value:
        yield value
        return
    fd, path = tempfile.mkstemp(prefix="kernel-tls-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value)
        yield path
    finally:
        os.unlink(path)


def generated_certificate(directory: Path, hostname: str = "localhost") -> tuple[str, str]:
    """The development certificate and key files in ``directory``, made (again) when missing or expiring."""
    from cryptography import x509

    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "dev-cert.pem", directory / "dev-key.pem"
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one gateway makes it, the others wait and read it
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            hosts = {str(n) for n in names.get_values_for_type(x509.DNSName)}
            hosts |= {str(n) for n in names.get_values_for_type(x509.IPAddress)}
            left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
            if key_path.exists() and left > _RENEW_BEFORE and hostname in hosts:
                return str(cert_path), str(key_path)
        except (OSError, ValueError, x509.ExtensionNotFound):
            pass
        log.warning("generating a self-signed certificate in %s (backend.https: true): for development only", directory)
        cert_pem, key_pem = _self_signed(hostname)
        _write(key_path, key_pem)
        _write(cert_path, cert_pem)
    return str(cert_path), str(key_path)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _self_signed(hostname: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kernel dev-cert")])
    sans: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName("localhost.localdomain")]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    try:
        extra: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        extra = x509.DNSName(hostname)
    if extra not in sans:
        sans.append(extra)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
