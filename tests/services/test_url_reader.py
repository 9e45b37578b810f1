"""The ``url_reader`` service in the test backend: the plain HTTP reader behind ``backend.reading.allow``
(against a loopback server that speaks ETags), and a reader a package adds through ``kernel_url_readers``."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import HttpRouter, UrlReaderService, core_services, create_plugin
from kernel.testing import InProcessBackend, free_port, mock_credentials, start_test_backend
from tests import plugins
from tests.conftest import fixture_module

plugin = create_plugin("reader")
USER = mock_credentials.user.header()


@plugin.init(router=core_services.http_router, reader=core_services.url_reader)
def init(router: HttpRouter, reader: UrlReaderService) -> None:
    async def read(request: Request) -> JSONResponse:
        q = request.query_params
        answer = await reader.read_url(q["url"], etag=q.get("etag"), token=q.get("token"))
        return JSONResponse({"content": answer.buffer().decode(), "etag": answer.etag})

    async def tree(request: Request) -> JSONResponse:
        answer = await reader.read_tree(request.query_params["url"])
        return JSONResponse({"files": {f.path: f.content.decode() for f in answer.files}, "etag": answer.etag})

    async def search(request: Request) -> JSONResponse:
        answer = await reader.search(request.query_params["url"])
        return JSONResponse({"files": [f.url for f in answer.files], "etag": answer.etag})

    router.add_route("/read", read)
    router.add_route("/tree", tree)
    router.add_route("/search", search)


class Files:
    """A loopback file server: ``/docs/<name>`` with an ETag per version; ``If-None-Match`` gives 304."""

    def __init__(self) -> None:
        self.files = {"/docs/readme.md": b"hello"}
        self.version = 1
        self.seen: list[dict[str, str]] = []
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                files.seen.append(dict(self.headers))
                body = files.files.get(self.path)
                etag = f'"v{files.version}"'
                if body is None:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("etag", etag)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def files() -> Iterator[Files]:
    found = Files()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
async def backend(files: Files) -> AsyncIterator[InProcessBackend]:
    config = {"backend": {"reading": {"allow": [{"host": f"127.0.0.1:{files.port}", "paths": ["/docs/"]}]}}}
    memo = fixture_module(plugins.MEMO_READER)
    async with start_test_backend([plugin, memo], config=config) as started:
        yield started


async def test_read_url_gives_the_content_and_not_modified_for_its_etag(
    backend: InProcessBackend, files: Files
) -> None:
    url = files.url("/docs/readme.md")
    first = (await backend.client.get("/api/reader/read", params={"url": url, "token": "t0k"}, headers=USER)).json()
    assert first == {"content": "hello", "etag": '"v1"'}
    assert files.seen[-1]["Authorization"] == "Bearer t0k"
    again = await backend.client.get("/api/reader/read", params={"url": url, "etag": '"v1"'}, headers=USER)
    assert again.status_code == 304 and files.seen[-1]["If-None-Match"] == '"v1"'
    files.files["/docs/readme.md"], files.version = b"hello again", 2
    changed = (await backend.client.get("/api/reader/read", params={"url": url, "etag": '"v1"'}, headers=USER)).json()
    assert changed == {"content": "hello again", "etag": '"v2"'}
    missing = await backend.client.get("/api/reader/read", params={"url": files.url("/docs/gone.md")}, headers=USER)
    assert missing.status_code == 404


async def test_only_allowed_hosts_and_paths_are_read(backend: InProcessBackend, files: Files) -> None:
    asked = len(files.seen)
    for url in (
        files.url("/private/readme.md"),  # a path not listed
        files.url("/docs/../private/readme.md"),  # normalised before the check
        f"http://localhost:{files.port}/docs/readme.md",  # another host name
        "https://example.com/docs/readme.md",
    ):
        refused = await backend.client.get("/api/reader/read", params={"url": url}, headers=USER)
        assert refused.status_code == 403, url
        assert "backend.reading.allow" in refused.json()["error"]["message"]
    assert len(files.seen) == asked  # nothing was fetched


async def test_the_plain_reader_searches_literally_and_reads_no_tree(backend: InProcessBackend, files: Files) -> None:
    url = files.url("/docs/readme.md")
    found = (await backend.client.get("/api/reader/search", params={"url": url}, headers=USER)).json()
    assert found["files"] == [url] and found["etag"]
    none = await backend.client.get("/api/reader/search", params={"url": files.url("/docs/none.md")}, headers=USER)
    assert none.json() == {"files": [], "etag": ""}
    tree = await backend.client.get("/api/reader/tree", params={"url": files.url("/docs/")}, headers=USER)
    assert tree.status_code == 501


async def test_a_package_adds_a_reader(backend: InProcessBackend) -> None:
    tree = (await backend.client.get("/api/reader/tree", params={"url": "memo://docs"}, headers=USER)).json()
    assert tree == {"files": {"guide.md": "# Guide", "index.md": "# Docs"}, "etag": "memo-v1"}
    found = (await backend.client.get("/api/reader/search", params={"url": "memo://docs/*.md"}, headers=USER)).json()
    assert found["files"] == ["memo://docs/guide.md", "memo://docs/index.md"]
    read = await backend.client.get("/api/reader/read", params={"url": "memo://other/x.txt"}, headers=USER)
    assert read.json() == {"content": "x", "etag": "memo-v1"}
