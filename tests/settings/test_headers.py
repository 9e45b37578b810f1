"""kernel.settings.headers: ``backend.csp`` and ``backend.securityHeaders``."""

from __future__ import annotations

from kernel.config import Config
from kernel.settings import read_settings


def test_csp_and_security_headers() -> None:
    backend = {"csp": {"connect-src": ["'self'", "http:"], "upgrade-insecure-requests": False},
               "securityHeaders": {"X-Frame-Options": "DENY", "Origin-Agent-Cluster": False}}  # fmt: skip
    edge = read_settings(Config.from_dict({"backend": backend})).edge
    assert edge.csp == {"connect-src": ["'self'", "http:"], "upgrade-insecure-requests": False}
    assert edge.security_headers == {"X-Frame-Options": "DENY", "Origin-Agent-Cluster": False}
