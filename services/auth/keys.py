"""A plugin's signing keys: ES256 pairs made in its own process, public halves in its database.

Each worker makes its own key pair and signs plugin tokens with it for ``key_seconds``, then
makes a new one. The private key never leaves the process (nor its memory: it is not logged,
not stored). The public key goes into the plugin's database first — only then is it used —
and stays there three times as long as it signs, so every replica, and every kernel sharing
the database, publishes the keys of all of them at ``/.backstage/auth/v1/jwks.json``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from kernel.api import ConfigError, DatabaseService, Logger, StaticKey
from kernel_services.auth.tokens import ALGORITHM, PLUGIN_TOKEN_SECONDS

MIGRATIONS = [
    (
        "kernel-auth-0001-public-keys",
        "CREATE TABLE kernel_auth_public_keys (kid TEXT PRIMARY KEY, jwk TEXT NOT NULL, expires_at REAL NOT NULL)",
    )
]
#: how many times longer a public key is published than its private half signs
PUBLISH_FACTOR = 3


class SigningKey:
    """A private key in memory and the id its public half is published under."""

    __slots__ = ("expires_at", "kid", "private")

    def __init__(self, kid: str, private: Any, expires_at: float) -> None:
        self.kid = kid
        self.private = private
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return f"SigningKey({self.kid!r})"  # never the key itself


class PluginKeys:
    """The signing key of one plugin in this process, rotated; the published public keys."""

    def __init__(self, database: DatabaseService, logger: Logger, key_seconds: float = PLUGIN_TOKEN_SECONDS) -> None:
        self._database = database
        self._logger = logger
        self.key_seconds = key_seconds
        self._current: SigningKey | None = None
        self._lock = asyncio.Lock()
        self._migrated = False

    async def signing_key(self) -> SigningKey:
        """The key to sign with now: made (and its public half stored) when there is none or it expired."""
        key = self._current
        if key is not None and key.expires_at > time.time():
            return key
        async with self._lock:
            key = self._current
            if key is None or key.expires_at <= time.time():
                key = self._current = await self._new_key()
            return key

    async def _new_key(self) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric import ec
        from jwt.algorithms import ECAlgorithm

        private = ec.generate_private_key(ec.SECP256R1())
        kid = str(uuid.uuid4())
        public: dict[str, Any] = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        public.update(kid=kid, alg=ALGORITHM, use="sig")
        now = time.time()
        db = await self._db()
        await db.execute("DELETE FROM kernel_auth_public_keys WHERE expires_at < $1", now)
        await db.execute(
            "INSERT INTO kernel_auth_public_keys (kid, jwk, expires_at) VALUES ($1, $2, $3)",
            kid,
            json.dumps(public),
            now + self.key_seconds * PUBLISH_FACTOR,
        )
        self._logger.info("created a new signing key", kid=kid)
        return SigningKey(kid, private, now + self.key_seconds)

    async def public_keys(self) -> list[dict[str, Any]]:
        """Every published public key that has not expired (of every replica and instance)."""
        db = await self._db()
        rows = await db.fetch_all(
            "SELECT jwk FROM kernel_auth_public_keys WHERE expires_at > $1 ORDER BY expires_at", time.time()
        )
        return [json.loads(row["jwk"]) for row in rows]

    async def _db(self) -> Any:
        if not self._migrated:
            await self._database.migrate(MIGRATIONS)
            self._migrated = True
        return await self._database.get_client()


class StaticPluginKeys:
    """Keys from files (``backend.auth.pluginKeyStore.type: static``): the first signs, every one is published."""

    def __init__(self, keys: Sequence[StaticKey], key_seconds: float = PLUGIN_TOKEN_SECONDS) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
        from jwt.algorithms import ECAlgorithm

        self.key_seconds = key_seconds
        self._public: list[dict[str, Any]] = []
        for key in keys:
            public = load_pem_public_key(_read(key.public_key_file, "publicKeyFile"))
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise ConfigError(f"Invalid config: backend.auth.pluginKeyStore key '{key.key_id}' is not an EC key")
            jwk: dict[str, Any] = ECAlgorithm.to_jwk(public, as_dict=True)
            jwk.update(kid=key.key_id, alg=key.algorithm, use="sig")
            self._public.append(jwk)
        first = keys[0]
        assert first.private_key_file is not None  # checked with the settings
        private = load_pem_private_key(_read(first.private_key_file, "privateKeyFile"), password=None)
        self._signing = SigningKey(first.key_id, private, float("inf"))

    async def signing_key(self) -> SigningKey:
        return self._signing

    async def public_keys(self) -> list[dict[str, Any]]:
        return list(self._public)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"Invalid config: backend.auth.pluginKeyStore {what} '{path}': {exc.strerror}") from None
