"""The ``userInfo`` service: who a user is, from the verified user token (its ``sub`` and ``ent`` claims)."""

from __future__ import annotations

from kernel.api import Credentials, InputError, UserInfoResult


class TokenUserInfo:
    """A ``kernel.api.UserInfo`` reading the identity the gateway verified.

    A user reached through another plugin (``obo``) carries a limited token without ownership
    claims: only the user's own ref is known then.
    """

    async def get_user_info(self, credentials: Credentials) -> UserInfoResult:
        principal = credentials.principal
        if principal.type != "user":
            raise InputError(f"User info needs user credentials, not {principal.type} credentials")
        refs = list(principal.ownership_refs) or [principal.subject]
        return UserInfoResult(principal.subject, refs)
