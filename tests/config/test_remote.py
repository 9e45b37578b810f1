"""Config from a URL: loaded at start, followed every ``reloadIntervalSeconds``, refused as a file reload is.

The config server is a real HTTP server on 127.0.0.1 in a thread; the kernels are real. The loader's
arguments come from a package's ``kernel_root_config_options`` (the reference system's
``configFactory({argv, remote})``): the kernel's own file, then the URL, re-read every 0.2 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kernel.config import ConfigError, load_config
from kernel.testing import KernelProcess, free_port, make_package, wait_for
from tests import plugins
from tests.conftest import base_config


class ConfigServer:
    """Serves ``body`` at ``/app-config.yaml``; ``stop()`` and ``start()`` take it down and up on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.body = ""
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/app-config.yaml"

    def serve(self, data: dict[str, Any]) -> None:
        self.body = yaml.safe_dump(data)

    def start(self) -> ConfigServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                ok = self.path == "/app-config.yaml"
                body = server.body.encode() if ok else b"not here"
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/yaml")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def config_server() -> Iterator[ConfigServer]:
    server = ConfigServer().start()
    yield server
    server.stop()


def _remote(greeting: str, **backend: Any) -> dict[str, Any]:
    return {"serviced": {"greeting": greeting}, "backend": backend}


# -- the loader -------------------------------------------------------------------------------------


def test_the_loader_reads_a_url_between_files(config_server: ConfigServer, tmp_path: Path) -> None:
    config_server.serve({"app": {"title": "from the URL", "env": "${STAGE}"}, "other": 1})
    local = tmp_path / "local.yaml"
    local.write_text("other: 2\n")
    config = load_config([config_server.url, local], env={"STAGE": "prod"})
    assert config.get_string("app.title") == "from the URL" and config.get_string("app.env") == "prod"
    assert config.get("other") == 2  # a later layer wins, as between files


def test_the_loader_refuses_what_a_url_cannot_have(config_server: ConfigServer) -> None:
    config_server.serve({"secret": {"$file": "/etc/hostname"}})
    with pytest.raises(ConfigError, match=r"'\$file' cannot be used in config loaded from a URL"):
        load_config([config_server.url], env={})
    with pytest.raises(ConfigError, match="is a URL, but remote config is not enabled"):
        load_config([config_server.url], env={}, remote=False)
    with pytest.raises(ConfigError, match=r"Unable to read config from '.*/nowhere.yaml': it answered HTTP 404"):
        load_config([config_server.url.replace("app-config", "nowhere")], env={})


# -- a kernel --------------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    make_package(
        root, "kernel-test-serviced", {"test_serviced": plugins.SERVICED}, {"serviced": "test_serviced:plugin"}
    )
    make_package(
        root,
        "kernel-test-config-options",
        {"test_config_options": plugins.CONFIG_OPTIONS},
        {"config-options": "test_config_options"},
    )
    return root


def _kernel(site: Path, config_server: ConfigServer) -> KernelProcess:
    k = KernelProcess(base_config(), paths=[site])
    argv = ["--config", str(k.config_path), "--config", config_server.url]
    k.extra_env["KERNEL_TEST_CONFIG_OPTIONS"] = json.dumps({"argv": argv, "reloadIntervalSeconds": 0.2})
    return k


def _greeting(client: httpx.Client) -> str:
    greeting: str = client.get("/api/serviced/show").json()["greeting"]
    return greeting


def test_a_kernel_follows_its_config_url(site: Path, config_server: ConfigServer) -> None:
    config_server.serve(_remote("hello"))
    with _kernel(site, config_server) as k, httpx.Client(base_url=k.url, timeout=10) as c:
        assert _greeting(c) == "hello"  # the initial load

        config_server.serve(_remote("bonjour"))
        wait_for(lambda: _greeting(c) == "bonjour", 15, "the changed config was not picked up")

        # a change that breaks the kernel's settings is refused, as a file's would be: the old config stays
        config_server.serve(_remote("broken", gateway={"processes": 0}))
        wait_for(lambda: "config reload failed, keeping the previous config" in k.output(), 15)
        assert "backend.gateway.processes" in k.output()
        assert _greeting(c) == "bonjour"
        # and so is one that does not parse
        config_server.body = "serviced: [unclosed\n"
        wait_for(lambda: f"Failed to parse '{config_server.url}'" in k.output(), 15)
        assert _greeting(c) == "bonjour"

        # the URL down while running: logged, the config kept
        config_server.stop()
        wait_for(lambda: f"Unable to read config from '{config_server.url}'" in k.output(), 15)
        assert _greeting(c) == "bonjour"
        # back up with a valid change: followed again
        config_server.serve(_remote("hej"))
        config_server.start()
        wait_for(lambda: _greeting(c) == "hej", 15, "the config was not followed once the URL came back")


def test_a_config_url_down_at_start_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/app-config.yaml"  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "serve", "--config", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert f"kernel: config error: Unable to read config from '{url}'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_loader_arguments_come_from_a_package(tmp_path: Path) -> None:
    site = make_package(
        tmp_path / "site",
        "kernel-test-config-options",
        {"test_config_options": plugins.CONFIG_OPTIONS},
        {"config-options": "test_config_options"},
    )
    url = f"http://127.0.0.1:{free_port()}/chosen-in-code.yaml"  # nothing listens there
    options = {"argv": ["--config", url], "reloadIntervalSeconds": 5}
    env = {**os.environ, "PYTHONPATH": str(site), "KERNEL_TEST_CONFIG_OPTIONS": json.dumps(options)}
    command = [sys.executable, "-m", "kernel.cli", "serve", "--config", "ignored.yaml"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    # the package's argv replaced the command line's: the kernel stops at start naming its URL
    assert done.returncode == 2, done.stderr
    assert f"Unable to read config from '{url}'" in done.stderr and "ignored.yaml" not in done.stderr
