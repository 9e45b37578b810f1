"""The ``url_reader`` service's contract: what it answers, and the readers packages add (``kernel_url_readers``).

A contract module: no I/O, nothing of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = [
    "ReadTreeResponse",
    "ReadTreeResponseFile",
    "ReadUrlResponse",
    "SearchResponse",
    "SearchResponseFile",
    "UrlReaderEntry",
    "UrlReaderService",
]


@dataclass(frozen=True)
class ReadUrlResponse:
    """What ``url_reader.read_url`` read: the bytes, and the ``etag`` to send next time."""

    content: bytes = field(repr=False)
    etag: str | None = None
    last_modified_at: datetime | None = None

    def buffer(self) -> bytes:
        return self.content


@dataclass(frozen=True)
class SearchResponseFile:
    url: str
    content: bytes = field(repr=False)
    last_modified_at: datetime | None = None


@dataclass(frozen=True)
class SearchResponse:
    """The files ``url_reader.search`` found (``etag``: of the whole answer, for the next search)."""

    files: list[SearchResponseFile]
    etag: str = ""


@dataclass(frozen=True)
class ReadTreeResponseFile:
    path: str  # relative to the tree's root
    content: bytes = field(repr=False)
    last_modified_at: datetime | None = None


@dataclass(frozen=True)
class ReadTreeResponse:
    """A folder ``url_reader.read_tree`` read: its files, and the ``etag`` to send next time."""

    files: list[ReadTreeResponseFile]
    etag: str = ""


class UrlReaderService(Protocol):
    """Reads files and folders by URL (Backstage's UrlReaderService); the reader is chosen by the URL.

    ``etag`` is what an earlier answer said: when nothing changed, ``NotModifiedError`` (304).
    A URL no reader takes is ``NotAllowedError``; an operation a reader cannot do, ``NotImplementedError``.
    """

    async def read_url(self, url: str, *, etag: str | None = None, token: str | None = None) -> ReadUrlResponse: ...
    async def read_tree(self, url: str, *, etag: str | None = None) -> ReadTreeResponse: ...
    async def search(self, url: str, *, etag: str | None = None) -> SearchResponse: ...


@dataclass(frozen=True)
class UrlReaderEntry:
    """A reader a package adds (``kernel_url_readers``) and the URLs it takes (``predicate(url)``)."""

    reader: UrlReaderService
    predicate: Callable[[str], bool]
