"""GitHub- and GitLab-style readers for the ``urlReader`` service, configured under ``integrations.*``.

As the reference system's ``GithubUrlReader`` and ``GitlabUrlReader``, each takes the URLs of the
hosts its integrations name (``integrations.github[].host``, default ``github.com``;
``integrations.gitlab[].host``) and reads them through the host's API with the integration's
``token``:

* ``read_url`` of a file URL, ``https://<host>/<owner>/<repo>/blob/<ref>/<path>`` (GitLab:
  ``https://<host>/<group>/<project>/-/blob/<ref>/<path>``): GitHub's contents API with the raw
  media type, GitLab's raw file API; ``etag`` is sent as ``If-None-Match``, a 304 is
  ``NotModifiedError``;
* ``read_tree`` of a folder URL (``tree`` or ``blob``): the commit the ref names is the ``etag`` (the
  same commit again is ``NotModifiedError``), then the repository's archive at that commit
  (GitHub's tarball, GitLab's ``archive.tar.gz``), its files below the folder, paths relative to it;
* ``search`` of a URL whose path holds a glob (``docs/**/*.md``): the tree below the glob's first
  fixed folders, the files matching it, each with its file URL; without a glob, the one file or none.

``apiBaseUrl`` defaults to ``https://api.github.com`` for ``github.com`` and to
``https://<host>/api/v4`` for GitLab; GitHub Enterprise hosts name theirs. ``integrations`` is not a
runtime section: a plugin that reads through an integration declares it (``create_plugin(...,
config_reads=("integrations",), config_secrets=("integrations",))``); one that does not reads
github.com and gitlab.com without a token, and no other host.
"""

from __future__ import annotations

import fnmatch
import io
import json
import tarfile
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import msgspec

from kernel.api import (
    ConfigError,
    InputError,
    NotModifiedError,
    ReadTreeResponse,
    ReadTreeResponseFile,
    ReadUrlResponse,
    RootConfig,
    SearchResponse,
    SearchResponseFile,
    ServiceUnavailableError,
    UrlReaderEntry,
)
from kernel_services.url_reader import MAX_BYTES, fetch, last_modified, search_one

__all__ = ["GitReader", "Integration", "git_readers"]

_GLOB = set("*?[")


class Integration(msgspec.Struct, forbid_unknown_fields=False, frozen=True, rename="camel"):
    """One entry of ``integrations.github`` or ``integrations.gitlab`` (the keys the readers use; the
    reference system's others, ``rawBaseUrl`` or ``apps``, are let through)."""

    #: the host of the URLs this integration reads (``github.com``; ``host:port`` for another port)
    host: str
    #: the API's root (default: ``https://api.github.com`` for github.com, ``https://<host>/api/v3`` for
    #: GitHub Enterprise, ``https://<host>/api/v4`` for GitLab)
    api_base_url: str | None = None
    #: the token the API gets (GitHub: ``Authorization: token``; GitLab: ``PRIVATE-TOKEN``)
    token: str | None = None


@dataclass(frozen=True)
class Location:
    """A file or folder URL, taken apart: the repository, the ref and the path in it (no leading ``/``)."""

    repo: str
    ref: str
    path: str


class GitReader:
    """Reads one integration's URLs through its host's API (a ``kernel.api.UrlReaderService``)."""

    def __init__(self, kind: str, integration: Integration) -> None:
        self.kind = kind
        self.host = integration.host
        if kind == "gitlab":
            default = f"https://{integration.host}/api/v4"
        elif integration.host == "github.com":
            default = "https://api.github.com"
        else:
            default = f"https://{integration.host}/api/v3"  # GitHub Enterprise
        self.api = (integration.api_base_url or default).rstrip("/")
        self.token = integration.token

    def takes(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.netloc == self.host

    def _locate(self, url: str) -> Location:
        """``url``'s repository, ref and path; a URL of another shape is an ``InputError`` naming it."""
        path = urlsplit(url).path.strip("/")
        if any(unquote(segment) in (".", "..") for segment in path.split("/")):
            # the API's URL is made from these parts: "../../user" would reach another endpoint with the token
            raise InputError(f"A {self.kind} URL must not contain '.' or '..' segments: '{url}'")
        if self.kind == "gitlab":
            repo, sep, rest = path.partition("/-/")
            kind, _, rest = rest.partition("/")
        else:
            owner, name, kind, rest = ([*path.split("/", 3), "", "", ""])[:4]
            repo, sep = f"{owner}/{name}", "/"
        ref, _, inner = rest.partition("/")
        if not sep or kind not in ("blob", "tree", "raw") or not ref or repo.count("/") < 1:
            form = (
                "<group>/<project>/-/blob/<ref>/<path>" if self.kind == "gitlab" else "<owner>/<repo>/blob/<ref>/<path>"
            )
            raise InputError(f"Not a {self.kind} file or folder URL: '{url}' (expected https://{self.host}/{form})")
        return Location(repo, ref, inner)

    def _url(self, url: str, where: Location, path: str) -> str:
        """The file URL of ``path`` in ``where``'s repository at its ref (the scheme and host of ``url``)."""
        parts = urlsplit(url)
        dash = "/-" if self.kind == "gitlab" else ""
        return f"{parts.scheme}://{parts.netloc}/{where.repo}{dash}/blob/{where.ref}/{path}"

    def _headers(self, token: str | None = None) -> dict[str, str]:
        token = token or self.token
        if not token:
            return {}
        return {"PRIVATE-TOKEN": token} if self.kind == "gitlab" else {"Authorization": f"token {token}"}

    def _project(self, where: Location) -> str:
        if self.kind == "gitlab":
            return f"{self.api}/projects/{quote(where.repo, safe='')}"
        return f"{self.api}/repos/{quote(where.repo)}"

    async def read_url(self, url: str, *, etag: str | None = None, token: str | None = None) -> ReadUrlResponse:
        where = self._locate(url)
        headers = self._headers(token)
        if etag:
            headers["If-None-Match"] = etag
        if self.kind == "gitlab":
            api = f"{self._project(where)}/repository/files/{quote(where.path, safe='')}/raw?ref={quote(where.ref)}"
        else:
            api = f"{self._project(where)}/contents/{quote(where.path)}?ref={quote(where.ref)}"
            headers["Accept"] = "application/vnd.github.v3.raw"
        answer, content = await fetch(api, headers, url)
        return ReadUrlResponse(content, answer.get("ETag"), last_modified(answer.get("Last-Modified")))

    async def _commit(self, where: Location, url: str) -> str:
        """The commit ``where.ref`` names: the tree's ``etag``."""
        commits = f"{self._project(where)}/{'repository/' if self.kind == 'gitlab' else ''}commits"
        _, body = await fetch(f"{commits}/{quote(where.ref, safe='')}", self._headers(), url)
        try:
            found = json.loads(body)["id" if self.kind == "gitlab" else "sha"]
        except (ValueError, KeyError, TypeError):
            raise ServiceUnavailableError(
                f"could not read {url}: {self.kind} named no commit for '{where.ref}'"
            ) from None
        return str(found)

    async def read_tree(self, url: str, *, etag: str | None = None) -> ReadTreeResponse:
        where = self._locate(url)
        commit = await self._commit(where, url)
        if etag == commit:
            raise NotModifiedError(f"{url} has not changed")
        if self.kind == "gitlab":
            archive = f"{self._project(where)}/repository/archive.tar.gz?sha={commit}"
        else:
            archive = f"{self._project(where)}/tarball/{commit}"
        _, body = await fetch(archive, self._headers(), url)
        return ReadTreeResponse(_files_below(body, where.path, url), commit)

    async def search(self, url: str, *, etag: str | None = None) -> SearchResponse:
        where = self._locate(url)
        parts = where.path.split("/")
        fixed = next((i for i, part in enumerate(parts) if _GLOB & set(part)), None)
        if fixed is None:  # no glob: the one file, or none
            return await search_one(self, url, etag)
        folder = "/".join(parts[:fixed])
        tree = await self.read_tree(self._url(url, where, folder), etag=etag)
        pattern = "/".join(parts[fixed:])
        inside = f"{folder}/" if folder else ""
        files = [
            SearchResponseFile(self._url(url, where, inside + f.path), f.content)
            for f in tree.files
            if _matches(f.path, pattern)
        ]
        return SearchResponse(files, tree.etag)


def _matches(path: str, pattern: str) -> bool:
    """``fnmatch`` per path segment, ``**`` standing for any number of folders."""
    names, globs = path.split("/"), pattern.split("/")

    def match(i: int, j: int) -> bool:
        if j == len(globs):
            return i == len(names)
        if globs[j] == "**":
            return any(match(k, j + 1) for k in range(i, len(names) + 1))
        return i < len(names) and fnmatch.fnmatchcase(names[i], globs[j]) and match(i + 1, j + 1)

    return match(0, 0)


def _files_below(archive: bytes, folder: str, url: str) -> list[ReadTreeResponseFile]:
    """The regular files of a ``.tar.gz`` under ``folder`` (its first path component, the archive's own
    top folder, dropped), paths relative to ``folder``; at most ``MAX_BYTES`` in all."""
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    files: list[ReadTreeResponseFile] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                inner = member.name.partition("/")[2]
                if not member.isfile() or not inner.startswith(prefix):
                    continue
                total += member.size
                if total > MAX_BYTES:
                    raise ServiceUnavailableError(f"could not read {url}: the tree is over {MAX_BYTES} bytes")
                data = tar.extractfile(member)
                files.append(ReadTreeResponseFile(inner[len(prefix) :], data.read() if data is not None else b""))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ServiceUnavailableError(f"could not read {url}: not an archive ({exc})") from None
    return files


def git_readers(config: RootConfig) -> list[UrlReaderEntry]:
    """A reader per ``integrations.github`` and ``integrations.gitlab`` entry (and github.com's and gitlab.com's, always)."""
    entries: list[UrlReaderEntry] = []
    for kind in ("github", "gitlab"):
        try:
            raw = config.get_optional(f"integrations.{kind}")
        except ConfigError:  # withheld from this plugin's worker: it did not declare it (see the module doc)
            raw = None
        try:
            found = msgspec.convert(raw or [], list[Integration])
        except msgspec.ValidationError as exc:
            raise ConfigError(f"Invalid config: integrations.{kind}: {exc}") from None
        public = f"{kind}.com"
        if not any(i.host == public for i in found):
            found.append(Integration(public))  # as the reference system: github.com and gitlab.com need no entry
        for integration in found:
            reader = GitReader(kind, integration)
            entries.append(UrlReaderEntry(reader, reader.takes))
    return entries
