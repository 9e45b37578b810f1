"""A stand-in for the ``auth`` plugin's user-token issuer: keys, their JWKS on 127.0.0.1, tokens on demand.

Discovery sends ``auth`` to it (``discovery.endpoints``), so a test can make every kind of good or bad
user token: other keys, key ids, algorithms, issuers, expiries.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from kernel.testing import free_port
from kernel_services.auth.tokens import LIMITED_USER_TYP, USER_TYP, b64encode

USER = "user:default/ada"
GROUPS = ["user:default/ada", "group:default/team-a"]


def sign(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    """A compact JWS with exactly this header (key order kept), as the reference system's issuer makes it."""
    signing_input = ".".join(b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    if isinstance(key, rsa.RSAPrivateKey):
        signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input.encode(), key)
    else:
        signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), key)
    return f"{signing_input}.{b64encode(signature)}"


class Issuer:
    """A user-token issuer: an ES256 key (and an RS256 one), its JWKS served on 127.0.0.1."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = str(uuid.uuid4())
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_kid = str(uuid.uuid4())
        jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True)
        keys = [
            {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"},
            {**rsa_jwk, "kid": self.rsa_kid, "alg": "RS256", "use": "sig"},
        ]
        self.jwks = json.dumps({"keys": keys}).encode()
        self.port = free_port()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path == "/api/auth/.well-known/jwks.json"
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(issuer.jwks if ok else b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def user_token(
        self,
        *,
        exp: float | None = None,
        kid: str | None = None,
        key: Any = None,
        iss: str = "test",
        alg: str = "ES256",
    ) -> str:
        now = int(time.time())
        exp_i = int(exp if exp is not None else now + 3600)
        if alg == "RS256":
            key, kid = key or self.rsa_key, kid or self.rsa_kid
        key, kid = key or self.key, kid or self.kid
        limited = sign({"typ": LIMITED_USER_TYP, "alg": alg, "kid": kid}, {"sub": USER, "iat": now, "exp": exp_i}, key)
        claims = {"iss": iss, "sub": USER, "ent": GROUPS, "aud": "backstage", "iat": now, "exp": exp_i}
        claims["uip"] = limited.rsplit(".", 1)[1]
        return sign({"typ": USER_TYP, "alg": alg, "kid": kid}, claims, key)

    def limited_token(self) -> str:
        now = int(time.time())
        header = {"typ": LIMITED_USER_TYP, "alg": "ES256", "kid": self.kid}
        return sign(header, {"sub": USER, "iat": now, "exp": now + 600}, self.key)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
