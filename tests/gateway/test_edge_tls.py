"""TLS from certificate files or a generated one (``backend.https``), and HTTP/2 with a real client (curl)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kernel.gateway.tls import generated_certificate, server_context
from kernel.settings import Certificate, HttpsSettings
from kernel.testing import KernelProcess
from tests.gateway.edge_support import edge_config, edge_site

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def _https_ready(kernel: KernelProcess, context: ssl.SSLContext, timeout: float = 30.0) -> None:
    """``KernelProcess.wait_ready`` over https (it asks over http)."""
    url = f"https://127.0.0.1:{kernel.port}/.kernel/health/v1/readiness"
    deadline = time.monotonic() + timeout
    while True:
        assert kernel.proc is not None and kernel.proc.poll() is None, kernel.output()
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"not ready over https:\n{kernel.output()}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tls_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KernelProcess, Path]]:
    work = tmp_path_factory.mktemp("work")  # the working directory: the certificate goes to var/tls
    site = edge_site(tmp_path_factory.mktemp("site"))
    k = KernelProcess(edge_config(https=True), paths=[site], cwd=work)
    k.start(wait=False)
    cert = work / "var" / "tls" / "dev-cert.pem"
    deadline = time.monotonic() + 30
    while not cert.exists():
        assert time.monotonic() < deadline and k.proc is not None and k.proc.poll() is None, k.output()
        time.sleep(0.05)
    _https_ready(k, ssl.create_default_context(cafile=cert))
    yield k, cert
    k.stop()


def _curl(*args: str) -> tuple[str, dict[str, object]]:
    assert CURL is not None
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "10", "-w", "\n%{json}", *args], capture_output=True, text=True, check=True
    ).stdout
    body, _, info = out.rpartition("\n")
    return body, json.loads(info)


def test_https_with_a_generated_certificate(tls_kernel: tuple[KernelProcess, Path]) -> None:
    kernel, cert = tls_kernel
    assert (cert.parent / "dev-key.pem").stat().st_mode & 0o077 == 0  # the key is private
    url = f"https://127.0.0.1:{kernel.port}"
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=cert)) as c:
        resp = c.get("/api/edge/small")  # verified: the certificate names 127.0.0.1
        assert resp.status_code == 200 and resp.json() == {"small": True}
        assert resp.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        assert c.get("/api/echo/echo/x").json()["path"] == "/api/echo/echo/x"
    with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):  # plain HTTP on the TLS port gets nowhere
        httpx.get(f"http://127.0.0.1:{kernel.port}/api/edge/small", timeout=5)


@needs_curl
def test_http2_over_tls_with_curl(tls_kernel: tuple[KernelProcess, Path]) -> None:
    kernel, cert = tls_kernel
    body, info = _curl("--http2", "--cacert", str(cert), f"https://127.0.0.1:{kernel.port}/api/edge/big")
    assert info["http_version"] == "2" and info["response_code"] == 200  # ALPN chose h2
    assert json.loads(body)["items"][5]["id"] == 5
    body, info = _curl("--http2", "--cacert", str(cert), "-H", "Accept-Encoding: gzip", "--compressed",
                       f"https://127.0.0.1:{kernel.port}/api/edge/text-stream?n=3")  # fmt: skip
    assert info["http_version"] == "2" and body.count("quick brown fox") == 300


@needs_curl
def test_h2c_with_prior_knowledge(tmp_path_factory: pytest.TempPathFactory) -> None:
    site = edge_site(tmp_path_factory.mktemp("site"))
    with KernelProcess(edge_config(), paths=[site]) as kernel:
        body, info = _curl("--http2-prior-knowledge", f"{kernel.url}/api/echo/echo/h2c")
        assert info["http_version"] == "2" and json.loads(body)["path"] == "/api/echo/echo/h2c"
        assert (
            "strict-transport-security"
            not in _curl("-I", "--http2-prior-knowledge", f"{kernel.url}/api/edge/small")[0].lower()
        )


def test_a_certificate_from_pem_text_or_files(tmp_path: Path) -> None:
    cert_file, key_file = generated_certificate(tmp_path / "tls", "kernel.test")
    from_files = server_context(HttpsSettings(Certificate(cert_file, key_file)), alpn=["h2", "http/1.1"])
    text = HttpsSettings(Certificate(Path(cert_file).read_text(), Path(key_file).read_text()))
    from_text = server_context(text, alpn=["http/1.1"])
    assert from_files.minimum_version == from_text.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not list(Path(tempfile.gettempdir()).glob("kernel-tls-*.pem"))  # the PEM text's files are removed


def test_the_generated_certificate_is_kept_until_it_expires(tmp_path: Path) -> None:
    first = Path(generated_certificate(tmp_path, "kernel.test")[0]).read_bytes()
    assert Path(generated_certificate(tmp_path, "kernel.test")[0]).read_bytes() == first  # reused
    assert Path(generated_certificate(tmp_path, "other.test")[0]).read_bytes() != first  # another host: new one
