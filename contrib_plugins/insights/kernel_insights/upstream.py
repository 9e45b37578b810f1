"""The internal API the plugin asks: ``GET <externalApiUrl>/v1/services/<id>`` over one pooled aiohttp session.

Its answers become kernel errors, never tracebacks: 404 is ``NotFoundError``; anything else that
is not a JSON object in a 200 (a 5xx, another 4xx, a refused connection, a timeout, a body that
is not JSON or too large) is ``ServiceUnavailableError``. Callers see a short message; the
details (URL, status, exception) go to the plugin's log.
"""

from __future__ import annotations

import json
from typing import Any, Final

import aiohttp

from kernel.api import Logger, NotFoundError, ServiceUnavailableError

__all__ = ["MAX_BODY_BYTES", "Upstream"]

#: an answer larger than this is refused (503) rather than buffered
MAX_BODY_BYTES: Final = 1 << 20


class Upstream:
    """One pooled HTTP session for the plugin's worker; ``close`` it at shutdown."""

    def __init__(self, logger: Logger) -> None:
        self._logger = logger
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
                headers={"accept": "application/json"},
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def service(self, base_url: str, service_id: str, *, timeout: float) -> dict[str, Any]:
        """The internal API's JSON object for ``service_id`` (already validated: safe in a URL path)."""
        url = f"{base_url.rstrip('/')}/v1/services/{service_id}"
        try:
            async with self._client().get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                status = resp.status
                body = await _read_at_most(resp.content, MAX_BODY_BYTES + 1)
        except TimeoutError:
            self._logger.warning("insights upstream timed out", url=url, timeout=timeout)
            raise ServiceUnavailableError(
                f"The insights upstream API did not answer within {timeout:g}s; try again later"
            ) from None
        except aiohttp.ClientError as exc:
            self._logger.warning("insights upstream unreachable", url=url, error=f"{type(exc).__name__}: {exc}")
            raise ServiceUnavailableError("The insights upstream API is unreachable; try again later") from None
        if status == 404:
            raise NotFoundError(f"No insights for service '{service_id}'")
        if status != 200:
            self._logger.warning("insights upstream failed", url=url, status=status)
            raise ServiceUnavailableError(f"The insights upstream API failed (HTTP {status}); try again later")
        if len(body) > MAX_BODY_BYTES:
            self._logger.warning("insights upstream answer too large", url=url, limit=MAX_BODY_BYTES)
            raise ServiceUnavailableError("The insights upstream API answered more than the plugin accepts")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._logger.warning("insights upstream answered no JSON object", url=url)
            raise ServiceUnavailableError("The insights upstream API answered something that is not a JSON object")
        return data


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes (``read(n)`` alone stops at what is buffered so far)."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)
