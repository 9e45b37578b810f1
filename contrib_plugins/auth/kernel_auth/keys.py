"""Signing keys: generated in memory per worker, their public halves shared through the plugin's database.

Each worker (replica) signs with its own ES256 key (Backstage's ``TokenFactory`` does the same per
instance). A key is published (stored in ``auth_signing_keys``) *before* it signs anything, signs
for ``keyRotationSeconds``, then a new one replaces it on the next token. A public key stays
published until ``published_until``: at least 3 x the rotation period, and never less than the
rotation period plus the token lifetime, so every token a key signed expires before its key is
unpublished. Every replica lists every row, so all of them serve each other's keys. A key
that never signed anything is unpublished when it is replaced and when its worker stops, so
kernels that never issue a token (tests) leave no keys behind.
The private key never leaves the process and is never logged (its ``repr`` hides it).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from kernel.api import Database, DatabaseService, Logger

from .tokens import ALGORITHM

__all__ = ["MIGRATIONS", "KeyStore", "SigningKey", "SigningKeys"]

MIGRATIONS: Final = [
    (
        "001_auth_signing_keys",
        """CREATE TABLE auth_signing_keys (
            kid TEXT PRIMARY KEY,
            jwk TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        )""",
    )
]


@dataclass(frozen=True)
class SigningKey:
    """A private key of this worker and how long it may sign and stays published."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    created_at: float
    sign_until: float
    published_until: float


class KeyStore:
    """The public keys of every replica, in the plugin's database (migrated on first use)."""

    def __init__(self, database: DatabaseService) -> None:
        self._database = database
        self._db: Database | None = None
        self._lock = asyncio.Lock()

    async def _client(self) -> Database:
        if self._db is None:
            async with self._lock:
                if self._db is None:
                    await self._database.migrate(MIGRATIONS)
                    self._db = await self._database.get_client()
        return self._db

    async def add(self, kid: str, jwk: dict[str, Any], created_at: float, expires_at: float) -> None:
        db = await self._client()
        await db.execute(
            "INSERT INTO auth_signing_keys (kid, jwk, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            kid,
            json.dumps(jwk),
            created_at,
            expires_at,
        )

    async def remove(self, kid: str) -> None:
        db = await self._client()
        await db.execute("DELETE FROM auth_signing_keys WHERE kid = $1", kid)

    async def list(self, now: float) -> list[dict[str, Any]]:
        """Public JWKs not yet expired, oldest first; expired rows are deleted."""
        db = await self._client()
        await db.execute("DELETE FROM auth_signing_keys WHERE expires_at <= $1", now)
        rows = await db.fetch_all(
            "SELECT jwk FROM auth_signing_keys WHERE expires_at > $1 ORDER BY created_at, kid", now
        )
        return [json.loads(row["jwk"]) for row in rows]


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of ``key``: ``kty, crv, x, y`` plus ``kid``, ``alg`` and ``use: sig``."""
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"}


class SigningKeys:
    """This worker's current signing key, rotated lazily, published before use."""

    def __init__(self, store: KeyStore, logger: Logger, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._logger = logger
        self._clock = clock
        self._current: SigningKey | None = None
        self._signed = False  # has the current key signed a token?
        self._lock = asyncio.Lock()

    async def current(self, rotation_seconds: float, token_lifetime: float, *, sign: bool = True) -> SigningKey:
        """The key to sign with now: the current one, or a new one once it has signed long enough.

        ``sign=False`` only makes sure a key is published (at start-up).
        """
        key = self._current
        if key is None or self._clock() >= key.sign_until:
            async with self._lock:
                key = self._current
                if key is None or self._clock() >= key.sign_until:
                    unused = key if key is not None and not self._signed else None
                    key = await self._rotate(rotation_seconds, token_lifetime)
                    self._current, self._signed = key, False
                    if unused is not None:  # it never signed: nothing to verify with it
                        await self._store.remove(unused.kid)
        if sign:
            self._signed = True
        return key

    async def retire(self) -> None:
        """Unpublish the current key if it never signed a token (at shutdown: test kernels leave no keys)."""
        async with self._lock:
            key = self._current
            if key is not None and not self._signed:
                await self._store.remove(key.kid)
                self._current = None

    async def _rotate(self, rotation_seconds: float, token_lifetime: float) -> SigningKey:
        private = ec.generate_private_key(ec.SECP256R1())
        kid = str(uuid.uuid4())
        now = self._clock()
        published = now + max(3 * rotation_seconds, rotation_seconds + token_lifetime)
        await self._store.add(kid, public_jwk(private, kid), now, published)  # published before it signs
        self._logger.info("auth signing key created", kid=kid, signs_for=rotation_seconds)
        return SigningKey(kid, private, now, now + rotation_seconds, published)

    async def public_keys(self) -> list[dict[str, Any]]:
        return await self._store.list(self._clock())
