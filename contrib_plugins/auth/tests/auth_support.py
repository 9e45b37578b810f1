"""Helpers of the auth plugin's tests: real kernels (the plugin is installed), an external issuer, ID tokens."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from kernel.api import merge_config
from kernel.testing import KernelProcess

ISSUER = "https://idp.example.test"
AUDIENCE = "kernel-portal"


def start_kernel(tmp_path: Path, config: dict[str, Any] | None = None, *, env: str = "development") -> KernelProcess:
    """A real ``kernel serve`` with the auth plugin (and every other installed plugin), its database in ``tmp_path``."""
    cfg: dict[str, Any] = {
        "backend": {
            "database": {"client": "sqlite", "connection": {"directory": str(tmp_path / "data")}},
            "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 3, "shutdownGrace": 5, "killTimeout": 2},
        }
    }
    return KernelProcess(merge_config(cfg, config or {}), env={"KERNEL_ENV": env}).start(timeout=30)


def jwks_of(kernel: KernelProcess) -> dict[str, Any]:
    resp = httpx.get(f"{kernel.url}/api/auth/.well-known/jwks.json", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def verify_with_jwks(token: str, jwks: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Verify ``token`` as any client would: PyJWT, the key its ``kid`` names in ``jwks``."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["ES256"], **options)
    return claims


def guest_token(kernel: KernelProcess) -> dict[str, Any]:
    resp = httpx.get(f"{kernel.url}/api/auth/guest/refresh", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# ---------------------------------------------------------------------------- an external issuer


@dataclass
class Issuer:
    """An external OIDC issuer: its keys, a JWKS served on 127.0.0.1, and ID tokens it signs."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    published: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    delay: float = 0.0

    def add_key(self, kind: str = "rsa") -> str:
        kid = f"{kind}-{uuid.uuid4().hex[:8]}"
        if kind == "rsa":
            private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
            alg = "RS256"
        else:
            private = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
            alg = "ES256"
        self.keys[kid] = (private, alg)
        self.published.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return kid

    def id_token(self, kid: str, *, key: Any = None, **claims: Any) -> str:
        private, alg = self.keys[kid]
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "sub": "00u1234",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "email": "jane.doe@example.com",
            "name": "Jane Doe",
            **claims,
        }
        return jwt.encode(body, key if key is not None else private, algorithm=alg, headers={"kid": kid})
