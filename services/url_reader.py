"""The ``urlReader`` service: files by URL, through the reader that takes the URL (Backstage's ``UrlReaders``).

Readers come from the ``kernel_url_readers`` hook, each with a ``predicate(url)``; the first whose
predicate takes a URL reads it (a later package's before an earlier one's, the kernel's last). A URL
no reader takes is ``NotAllowedError``, naming ``backend.reading.allow``.

The kernel's own reader is the reference system's ``FetchUrlReader``: a plain HTTP(S) GET of the
URLs that ``backend.reading.allow`` lists (``host``: a host name, ``*.`` for its subdomains, ``:port``
or ``:from-to`` for other ports than the scheme's; ``paths``: allowed path prefixes, all when absent).
``etag`` is sent as ``If-None-Match``: a 304 is ``NotModifiedError``; a 404 is ``NotFoundError``.
It cannot read a tree (``NotImplementedError``), and ``search`` takes the URL literally (one file,
or none when it is not there), as the reference system's does.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import msgspec

from kernel.api import (
    ConfigError,
    HookCaller,
    NotAllowedError,
    NotFoundError,
    NotImplementedError,
    NotModifiedError,
    ReadTreeResponse,
    ReadUrlResponse,
    RootConfig,
    SearchResponse,
    SearchResponseFile,
    ServiceFactory,
    ServiceUnavailableError,
    UrlReaderEntry,
    UrlReaderService,
    core_services,
    create_service_factory,
    read_section,
)

__all__ = [
    "FetchUrlReader",
    "ReadingAllow",
    "ReadingSettings",
    "UrlReaders",
    "fetch_readers",
    "http_get",
    "last_modified",
]

TIMEOUT = 30.0
MAX_BYTES = 64 * 1024 * 1024


class ReadingAllow(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str
    paths: list[str] | None = None


class ReadingSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``backend.reading``: what the plain HTTP reader may read."""

    allow: list[ReadingAllow] = []


def read_reading_settings(config: RootConfig) -> ReadingSettings:
    return read_section(config, "backend.reading", ReadingSettings)


def _ports(spec: str) -> tuple[int, int] | None:
    """``None``: the scheme's own port only; else the inclusive range of ``8080`` or ``8000-8999``."""
    if not spec:
        return None
    low, _, high = spec.partition("-")
    try:
        start, end = int(low), int(high or low)
    except ValueError:
        raise ConfigError(f"Invalid port in backend.reading.allow: '{spec}'") from None
    if not 0 < start <= end:
        raise ConfigError(f"Invalid port range in backend.reading.allow: '{spec}'")
    return start, end


def _allows(entry: ReadingAllow) -> Callable[[str], bool]:
    hostname, _, port = entry.host.partition(":")
    ports = _ports(port)

    def allows(url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            return False
        name = parts.hostname
        if hostname.startswith("*."):
            if not name.endswith(hostname[1:]):
                return False
        elif name != hostname.lower():
            return False
        try:
            explicit = parts.port
        except ValueError:
            return False
        if ports is None:
            if explicit is not None:
                return False
        else:
            actual = explicit if explicit is not None else (443 if parts.scheme == "https" else 80)
            if not ports[0] <= actual <= ports[1]:
                return False
        if entry.paths is None:
            return True
        path = posixpath.normpath(parts.path or "/")
        if parts.path.endswith("/") and not path.endswith("/"):
            path += "/"  # as node's path.posix.normalize: /docs/ stays under /docs/
        return any(path.startswith(allowed) for allowed in entry.paths)

    return allows


def last_modified(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


async def http_get(url: str, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
    """Status, headers and body (``MAX_BYTES`` at most) of a GET; a failure to connect or read, or a
    body over the bound, is ``ServiceUnavailableError`` naming the URL."""
    import aiohttp  # here: a worker that never reads a URL never loads an HTTP client

    try:
        async with (
            aiohttp.ClientSession() as http,  # reads are rare: no pool to keep (and close) per plugin
            http.get(url, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as answer,
        ):
            content = await answer.content.read(MAX_BYTES + 1) if answer.status < 300 else b""
            if len(content) > MAX_BYTES:
                raise ServiceUnavailableError(f"could not read {url}: over {MAX_BYTES} bytes")
            return answer.status, answer.headers, content
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ServiceUnavailableError(f"Unable to read {url}, {type(exc).__name__}: {exc}") from None


async def fetch(url: str, headers: Mapping[str, str], what: str | None = None) -> tuple[Mapping[str, str], bytes]:
    """Headers and body of a GET answered 2xx; a 304 is ``NotModifiedError``, a 404 ``NotFoundError``, any
    other answer ``ServiceUnavailableError``, each naming ``what`` (the URL the caller was asked for)."""
    what = what or url
    status, answer, content = await http_get(url, headers)
    if status == 304:
        raise NotModifiedError(f"{what} has not changed")
    if status == 404:
        raise NotFoundError(f"could not read {what}, 404 Not Found")
    if status >= 300:
        raise ServiceUnavailableError(f"could not read {what}, {status}")
    return answer, content


class FetchUrlReader:
    """A plain HTTP(S) reader (a ``kernel.api.UrlReaderService``); see the module doc."""

    async def read_url(self, url: str, *, etag: str | None = None, token: str | None = None) -> ReadUrlResponse:
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if token:
            headers["Authorization"] = f"Bearer {token}"
        answer, content = await fetch(url, headers)
        return ReadUrlResponse(content, answer.get("ETag"), last_modified(answer.get("Last-Modified")))

    async def read_tree(self, url: str, *, etag: str | None = None) -> ReadTreeResponse:
        raise NotImplementedError("FetchUrlReader does not implement readTree")

    async def search(self, url: str, *, etag: str | None = None) -> SearchResponse:
        return await search_one(self, url, etag)


async def search_one(reader: UrlReaderService, url: str, etag: str | None) -> SearchResponse:
    """A search of a URL without a glob: the one file ``reader`` reads there, or none when it is not there."""
    try:
        data = await reader.read_url(url, etag=etag)
    except NotFoundError:
        return SearchResponse([], "")
    return SearchResponse([SearchResponseFile(url, data.content, data.last_modified_at)], data.etag or "")


def fetch_readers(config: RootConfig) -> list[UrlReaderEntry]:
    """The plain reader for the URLs ``backend.reading.allow`` lists (none listed: no URL)."""
    checks = [_allows(entry) for entry in read_reading_settings(config).allow]
    return [UrlReaderEntry(FetchUrlReader(), lambda url: any(check(url) for check in checks))]


class UrlReaders:
    """The ``url_reader`` service: each URL to the first reader whose predicate takes it."""

    def __init__(self, entries: Sequence[UrlReaderEntry]) -> None:
        self._entries = list(entries)

    def _reader_for(self, url: str) -> UrlReaderEntry:
        for entry in self._entries:
            if entry.predicate(url):
                return entry
        raise NotAllowedError(
            f"Reading from '{url}' is not allowed. You may need to configure an integration for the target host, "
            "or add it to the configured list of allowed hosts at 'backend.reading.allow'"
        )

    async def read_url(self, url: str, *, etag: str | None = None, token: str | None = None) -> ReadUrlResponse:
        return await self._reader_for(url).reader.read_url(url, etag=etag, token=token)

    async def read_tree(self, url: str, *, etag: str | None = None) -> ReadTreeResponse:
        return await self._reader_for(url).reader.read_tree(url, etag=etag)

    async def search(self, url: str, *, etag: str | None = None) -> SearchResponse:
        return await self._reader_for(url).reader.search(url, etag=etag)


@create_service_factory(
    core_services.url_reader, {"config": core_services.root_config, "hooks": core_services.root_hooks}
)
def _url_reader(config: RootConfig, hooks: HookCaller) -> UrlReaders:
    entries = [entry for found in hooks.call("kernel_url_readers", config=config) for entry in found]
    return UrlReaders(entries)


FACTORIES: list[ServiceFactory] = [_url_reader]
