"""Issuing user tokens and the Backstage identity response that carries them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from kernel.api import Discovery, Logger

from .config import AuthConfig, token_lifetime
from .keys import SigningKeys
from .tokens import parse_entity_ref, sign_user_token

__all__ = ["UserTokenIssuer"]


class UserTokenIssuer:
    """Signs full user tokens with this worker's current key; ``iss`` is the plugin's external base URL."""

    def __init__(
        self,
        plugin_id: str,
        keys: SigningKeys,
        discovery: Discovery,
        settings: Callable[[], AuthConfig],
        logger: Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._plugin_id = plugin_id
        self._keys = keys
        self._discovery = discovery
        self._settings = settings
        self._logger = logger
        self._clock = clock

    async def issuer(self) -> str:
        return await self._discovery.get_external_base_url(self._plugin_id)

    async def issue(self, user_entity_ref: str, ownership_entity_refs: list[str]) -> dict[str, Any]:
        """A ``backstageIdentity`` object: ``token``, ``expiresInSeconds`` and ``identity``.

        ``ValueError`` if a ref is not a valid entity ref; the user's own ref is always in ``ent``.
        """
        sub = parse_entity_ref(user_entity_ref)
        ent = [sub]
        for ref in ownership_entity_refs:
            full = parse_entity_ref(ref)
            if full not in ent:
                ent.append(full)
        settings = self._settings()
        lifetime = token_lifetime(settings)
        key = await self._keys.current(settings.key_rotation_seconds, lifetime)
        now = self._clock()
        iat = math.floor(now)
        # a token never outlives the publication of its key (the lifetime may have grown on a reload)
        exp = min(iat + lifetime, math.floor(key.published_until))
        token = sign_user_token(
            key.private_key, key.kid, issuer=await self.issuer(), sub=sub, ent=ent, iat=iat, exp=exp
        )
        self._logger.info("issued user token", sub=sub, kid=key.kid)
        return {
            "token": token,
            "expiresInSeconds": max(round(exp - now), 0),
            "identity": {"type": "user", "userEntityRef": sub, "ownershipEntityRefs": ent},
        }
