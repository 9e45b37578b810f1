"""The ``url_reader`` service's GitHub and GitLab readers (``integrations.*``), in the test backend, against
loopback servers that speak the endpoints of those APIs the readers use: contents or raw files with
ETags, the commit a ref names, the repository's archive."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from kernel.testing import InProcessBackend, free_port, start_test_backend
from tests.services.test_url_reader import USER, plugin

TOKEN = "integration-token-0123"


class GitHost:
    """A loopback ``github`` or ``gitlab`` host with one repository ``acme/site``, its API under ``/api/v3``
    or ``/api/v4``; every request's headers are kept in ``seen``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.files = {"docs/index.md": b"# Docs", "docs/guide/setup.md": b"# Setup", "README.md": b"hi"}
        self.seen: list[dict[str, str]] = []
        self.port = free_port()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.seen.append(dict(self.headers))
                status, headers, body = host.answer(self.path, self.headers)
                self.send_response(status)
                for name, value in {**headers, "content-length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, kind: str, ref: str, path: str) -> str:
        dash = "/-" if self.kind == "gitlab" else ""
        return f"http://{self.host}/acme/site{dash}/{kind}/{ref}/{path}"

    @property
    def commit(self) -> str:
        return hashlib.sha1(json.dumps(sorted((k, v.hex()) for k, v in self.files.items())).encode()).hexdigest()

    def answer(self, raw: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        wanted = ("PRIVATE-TOKEN", TOKEN) if self.kind == "gitlab" else ("Authorization", f"token {TOKEN}")
        if headers.get(wanted[0]) != wanted[1]:
            return 401, {}, b'{"message": "Bad credentials"}'
        if self.kind == "github":
            prefix = "/api/v3/repos/acme/site/"
            file_path = "contents/"
        else:
            prefix = "/api/v4/projects/acme%2Fsite/repository/"
            file_path = "files/"
        if not parts.path.startswith(prefix):
            return 404, {}, b"{}"
        rest = parts.path[len(prefix) :]
        if rest.startswith(file_path):
            name = unquote(rest[len(file_path) :].removesuffix("/raw"))
            if self.kind == "github" and headers.get("Accept") != "application/vnd.github.v3.raw":
                return 415, {}, b"{}"
            if query.get("ref") != "main" or name not in self.files:
                return 404, {}, b"{}"
            etag = '"' + hashlib.sha1(self.files[name]).hexdigest() + '"'
            if headers.get("If-None-Match") == etag:
                return 304, {"etag": etag}, b""
            return 200, {"etag": etag}, self.files[name]
        if rest == "commits/main":
            return (
                200,
                {"content-type": "application/json"},
                json.dumps({"sha" if self.kind == "github" else "id": self.commit}).encode(),
            )
        if rest in (f"tarball/{self.commit}", "archive.tar.gz") and query.get("sha", self.commit) == self.commit:
            return 200, {"content-type": "application/gzip"}, self.archive()
        return 404, {}, b"{}"

    def archive(self) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for name, data in self.files.items():
                info = tarfile.TarInfo(f"acme-site-{self.commit[:7]}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return out.getvalue()


@pytest.fixture(scope="module", params=["github", "gitlab"])
def git(request: pytest.FixtureRequest) -> Iterator[GitHost]:
    host = GitHost(request.param)
    yield host
    host.server.shutdown()
    host.server.server_close()


@pytest.fixture
async def backend(git: GitHost) -> AsyncIterator[InProcessBackend]:
    api = f"http://{git.host}/api/{'v4' if git.kind == 'gitlab' else 'v3'}"
    config = {"integrations": {git.kind: [{"host": git.host, "apiBaseUrl": api, "token": TOKEN}]}}
    async with start_test_backend([plugin], config=config) as started:
        yield started


async def test_a_file_is_read_with_the_integrations_token_and_not_modified_for_its_etag(
    backend: InProcessBackend, git: GitHost
) -> None:
    url = git.url("blob", "main", "docs/index.md")
    first = (await backend.client.get("/api/reader/read", params={"url": url}, headers=USER)).json()
    assert first["content"] == "# Docs" and first["etag"]
    again = await backend.client.get("/api/reader/read", params={"url": url, "etag": first["etag"]}, headers=USER)
    assert again.status_code == 304 and git.seen[-1]["If-None-Match"] == first["etag"]
    git.files["docs/index.md"] = b"# Docs, again"
    changed = await backend.client.get("/api/reader/read", params={"url": url, "etag": first["etag"]}, headers=USER)
    assert changed.json()["content"] == "# Docs, again" and changed.json()["etag"] != first["etag"]
    missing = await backend.client.get(
        "/api/reader/read", params={"url": git.url("blob", "main", "no.md")}, headers=USER
    )
    assert missing.status_code == 404


async def test_a_folder_is_read_from_the_archive_of_the_commit_its_ref_names(
    backend: InProcessBackend, git: GitHost
) -> None:
    url = git.url("tree", "main", "docs")
    tree = (await backend.client.get("/api/reader/tree", params={"url": url}, headers=USER)).json()
    assert tree["files"] == {"index.md": git.files["docs/index.md"].decode(), "guide/setup.md": "# Setup"}
    assert tree["etag"] == git.commit
    whole = await backend.client.get("/api/reader/tree", params={"url": git.url("tree", "main", "")}, headers=USER)
    assert set(whole.json()["files"]) == set(git.files)


async def test_search_finds_the_files_a_glob_matches(backend: InProcessBackend, git: GitHost) -> None:
    found = await backend.client.get(
        "/api/reader/search", params={"url": git.url("blob", "main", "docs/**/*.md")}, headers=USER
    )
    assert sorted(found.json()["files"]) == [
        git.url("blob", "main", "docs/guide/setup.md"),
        git.url("blob", "main", "docs/index.md"),
    ]
    assert found.json()["etag"] == git.commit
    top = await backend.client.get("/api/reader/search", params={"url": git.url("blob", "main", "*.md")}, headers=USER)
    assert top.json()["files"] == [git.url("blob", "main", "README.md")]
    one = await backend.client.get(
        "/api/reader/search", params={"url": git.url("blob", "main", "README.md")}, headers=USER
    )
    assert one.json()["files"] == [git.url("blob", "main", "README.md")]


async def test_a_url_of_another_shape_is_refused_naming_the_form(backend: InProcessBackend, git: GitHost) -> None:
    asked = len(git.seen)
    refused = await backend.client.get("/api/reader/read", params={"url": f"http://{git.host}/acme"}, headers=USER)
    assert refused.status_code == 400
    assert f"Not a {git.kind} file or folder URL" in refused.json()["error"]["message"]
    # dot segments would make the API URL reach another endpoint with the integration's token
    for sneaky in (git.url("blob", "main", "../../../../user"), git.url("blob", "main", "docs/%2e%2e/x")):
        refused = await backend.client.get("/api/reader/read", params={"url": sneaky}, headers=USER)
        assert refused.status_code == 400 and "'..' segments" in refused.json()["error"]["message"], sneaky
    assert len(git.seen) == asked


def test_a_plugin_that_did_not_declare_the_integrations_reads_only_the_public_hosts() -> None:
    """Its scoped config withholds ``integrations``: no error, no token, github.com and gitlab.com only."""
    from kernel.config import Config
    from kernel_services.url_reader_git import git_readers

    full = Config.from_dict({"integrations": {"github": [{"host": "ghe.example.com", "token": TOKEN}]}})
    assert {e.reader.host for e in git_readers(full)} == {"ghe.example.com", "github.com", "gitlab.com"}  # type: ignore[attr-defined]
    withheld = Config({}, {}, hidden={("integrations",): "not declared by plugin 'reader'"})
    readers = [e.reader for e in git_readers(withheld)]
    assert {(r.host, r.token) for r in readers} == {("github.com", None), ("gitlab.com", None)}  # type: ignore[attr-defined]
