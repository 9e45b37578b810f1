"""The upstream APIs: ``GET <url>`` for a JSON array, over one pooled aiohttp session.

aiohttp is imported on the first call, not with the plugin: a kernel that does not configure
the plugin (it is installed in every kernel of this repository) never loads it in this worker.

Every failure is an ``UpstreamError`` whose text is a short reason fit for callers ("unreachable",
"answered HTTP 500", ...); the URL and the details go to the plugin's log.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from kernel.api import Logger

if TYPE_CHECKING:
    import aiohttp

__all__ = ["MAX_BODY_BYTES", "Upstream", "UpstreamError"]

#: an answer larger than this is refused rather than buffered
MAX_BODY_BYTES: Final = 8 << 20


class UpstreamError(Exception):
    """An upstream call failed; ``str(error)`` is the short reason (no URL, no upstream text)."""


class Upstream:
    """One pooled HTTP session for the plugin's worker, opened on first use; ``close`` it at shutdown."""

    def __init__(self, logger: Logger) -> None:
        self._logger = logger
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

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

    async def get_list(self, name: str, url: str, *, timeout: float) -> list[Any]:
        """The JSON array at ``url``; ``name`` (``frobs``, ``flerps``) names the upstream in the log."""
        import aiohttp

        try:
            async with self._client().get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                status = resp.status
                body = await _read_bounded(resp) if status == 200 else b""
        except TimeoutError:
            self._logger.warning("upstream timed out", upstream=name, url=url, timeout=timeout)
            raise UpstreamError(f"did not answer within {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            self._logger.warning("upstream unreachable", upstream=name, url=url, error=f"{type(exc).__name__}: {exc}")
            raise UpstreamError("unreachable") from None
        except _TooLarge:
            self._logger.warning("upstream answer too large", upstream=name, url=url, limit=MAX_BODY_BYTES)
            raise UpstreamError(f"answered more than {MAX_BODY_BYTES >> 20} MiB") from None
        if status != 200:
            self._logger.warning("upstream failed", upstream=name, url=url, status=status)
            raise UpstreamError(f"answered HTTP {status}")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, list):
            self._logger.warning("upstream answered no JSON array", upstream=name, url=url)
            raise UpstreamError("answered something that is not a JSON array")
        return data


class _TooLarge(Exception):
    pass


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body, or ``_TooLarge`` as soon as it passes ``MAX_BODY_BYTES`` (never buffered further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)
