"""The hooks of kernel/hookspecs.py: each typed, documented, and used by a real package in a real kernel."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from kernel import hookspecs
from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.config.test_remote import (
    test_the_loader_arguments_come_from_a_package,  # noqa: F401 (named in EXERCISED, so runs here too)
)
from tests.conftest import TOKEN, assert_error_shape, base_config
from tests.services.test_permissions import (
    test_a_policy_package_decides_for_users_in_the_plugins_worker,  # noqa: F401 (named in EXERCISED, so runs here too)
)

ROOT = Path(__file__).resolve().parent.parent


def _hooks() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("kernel_")]


#: the test that exercises each hook through a real package (a new hook needs one)
EXERCISED = {
    "kernel_provide_services": "test_a_package_overrides_a_core_service_provides_its_own_and_adds_routes",
    "kernel_register_routes": "test_a_package_overrides_a_core_service_provides_its_own_and_adds_routes",
    "kernel_root_routes": "test_a_package_adds_a_root_endpoint_that_asks_the_gateway",
    "kernel_credential_verifiers": "test_a_package_verifies_its_own_tokens_and_follows_a_reload",
    "kernel_gateway_middleware": "test_a_package_wraps_every_request_in_its_middleware",
    "kernel_config_schemas": "test_config_check_validates_the_keys_a_package_declares",
    "kernel_cli_commands": "test_a_package_adds_a_kernel_subcommand",
    "kernel_permission_policy": "test_a_policy_package_decides_for_users_in_the_plugins_worker",
    "kernel_audit_event": "test_packages_ship_audit_events_read_urls_and_place_plugins",
    "kernel_url_readers": "test_packages_ship_audit_events_read_urls_and_place_plugins",
    "kernel_http_router_options": "test_packages_ship_audit_events_read_urls_and_place_plugins",
    "kernel_root_config_options": "test_the_loader_arguments_come_from_a_package",
}


def test_every_hook_is_typed_documented_and_exercised() -> None:
    readme = (ROOT / "README.md").read_text()
    assert sorted(EXERCISED) == _hooks()
    for name in _hooks():
        fn = getattr(hookspecs, name)
        doc = (fn.__doc__ or "").strip()
        assert doc and "\n" not in doc, f"{name} needs a one-line docstring"
        assert "return" in fn.__annotations__, name
        assert set(inspect.signature(fn).parameters) <= set(fn.__annotations__), f"{name} has untyped parameters"
        assert f"`{name}(" in readme, f"{name} is not in the README"
        assert callable(globals().get(EXERCISED[name])), f"{name}: no test {EXERCISED[name]}"


def test_a_package_overrides_a_core_service_provides_its_own_and_adds_routes(site: Path, tmp_path: Path) -> None:
    make_package(tmp_path, "acme-services", {"acme_services": plugins.PROVIDER}, {"acme": "acme_services"})
    make_package(
        tmp_path, "kernel-test-consumer", {"test_consumer": plugins.CONSUMER}, {"consumer": "test_consumer:plugin"}
    )
    with KernelProcess(base_config(), paths=[site, tmp_path]) as k, httpx.Client(base_url=k.url) as c:
        got = c.get("/api/consumer/show").json()
        assert got == {"cache": "from acme cache of consumer", "greeting": "greetings, you"}
        # kernel_register_routes reaches every plugin's router, in its own worker
        assert c.get("/api/consumer/.acme/stamp").json() == {"stamped": "consumer"}
        assert c.get("/api/echo/.acme/stamp").json() == {"stamped": "echo"}


def test_a_cycle_between_services_stops_startup(tmp_path: Path) -> None:
    make_package(tmp_path, "loop-services", {"loop_services": plugins.CYCLE}, {"loop": "loop_services"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend: {listen: {port: 0}}\n")
    proc = _kernel(["serve", "--config", str(cfg)], [tmp_path])
    assert proc.returncode == 1
    assert "circular service dependency: loop.a -> loop.b -> loop.a" in proc.stderr


# -- the gateway's hooks: one kernel with the acme-edge package ---------------------------------


@pytest.fixture(scope="module")
def edge_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edge")
    make_package(root, "acme-edge", {"acme_edge": plugins.EDGE}, {"acme-edge": "acme_edge"})
    return root


@pytest.fixture
def edge_kernel(site: Path, edge_site: Path) -> Iterator[KernelProcess]:
    config = base_config()
    config["backend"]["config"] = {"reload": {"enabled": True, "pollSeconds": 0.1}}
    config["acme"] = {"region": "eu", "token_prefix": "acme-"}
    k = KernelProcess(config, paths=[site, edge_site]).start()
    yield k
    k.stop()


def test_a_package_adds_a_root_endpoint_that_asks_the_gateway(edge_kernel: KernelProcess) -> None:
    with httpx.Client(base_url=edge_kernel.url) as c:
        assert_error_shape(c.get("/.acme/status"), 401, "AuthenticationError")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        got = c.get("/.acme/status", headers=auth).json()
        installed = sorted(p["id"] for p in c.get("/.kernel/instance/v1/plugins", headers=auth).json()["plugins"])
        assert {"echo", "other"} <= set(installed)
        assert got == {"ready": True, "plugins": installed, "caller": "external:ci-bot"}
        # the kernel's own root routes come through the same hook, beside the package's
        assert c.get("/.kernel/health/v1/readiness").json() == {"status": "ok"}
        assert_error_shape(c.get("/.acme/nothing-here"), 404, "NotFoundError")


def test_a_package_verifies_its_own_tokens_and_follows_a_reload(edge_kernel: KernelProcess) -> None:
    def whoami(token: str) -> httpx.Response:
        with httpx.Client(base_url=edge_kernel.url) as c:
            return c.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {token}"})

    assert whoami("acme-bob").json() == {"type": "service", "subject": "external:acme:bob"}
    assert whoami(TOKEN).json()["subject"] == "external:ci-bot"  # the built-in verifier still answers
    assert_error_shape(whoami("zeta-bob"), 401, "AuthenticationError")

    config = yaml.safe_load(edge_kernel.config_path.read_text())
    config["acme"]["token_prefix"] = "zeta-"
    edge_kernel.config_path.write_text(yaml.safe_dump(config))
    wait_for(lambda: whoami("zeta-bob").status_code == 200, 10, "the verifier was not rebuilt after the reload")
    assert whoami("zeta-bob").json()["subject"] == "external:acme:bob"
    assert whoami("acme-bob").status_code == 401


def test_a_package_wraps_every_request_in_its_middleware(edge_kernel: KernelProcess) -> None:
    with httpx.Client(base_url=edge_kernel.url) as c:
        for path, status in [("/api/echo/echo/x", 200), ("/api/nope/x", 404), ("/.kernel/health/v1/liveness", 200)]:
            resp = c.get(path)
            assert resp.status_code == status
            # inside the HTTP edge: it sees the request id, and the gateway's errors as answers
            assert (resp.headers["x-acme-region"], resp.headers["x-acme-saw-request-id"]) == ("eu", "yes"), path


def _kernel(args: list[str], paths: list[Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_config_check_validates_the_keys_a_package_declares(edge_site: Path, tmp_path: Path) -> None:
    good, bad, absent = (tmp_path / name for name in ("good.yaml", "bad.yaml", "absent.yaml"))
    good.write_text("acme: {region: eu}\n")
    bad.write_text("acme: {region: [1, 2], colour: red}\n")
    absent.write_text("app: {title: x}\n")
    assert _kernel(["config", "check", "--config", str(good)], [edge_site]).returncode == 0
    assert _kernel(["config", "check", "--config", str(absent)], [edge_site]).returncode == 0  # nothing to check
    proc = _kernel(["config", "check", "--config", str(bad)], [edge_site])
    assert proc.returncode == 2
    assert "Invalid config under 'acme'" in proc.stderr and "acme.region" in proc.stderr, proc.stderr


def test_a_package_adds_a_kernel_subcommand(edge_site: Path) -> None:
    proc = _kernel(["acme", "hello"], [edge_site])
    assert (proc.returncode, proc.stdout) == (7, "acme says hello\n")
    listed = _kernel(["--help"], [edge_site]).stdout
    assert all(name in listed for name in ("serve", "plugins", "config", "acme"))


def test_packages_ship_audit_events_read_urls_and_place_plugins(tmp_path: Path) -> None:
    """``kernel_audit_event``, ``kernel_url_readers`` and ``kernel_http_router_options`` in one real kernel."""
    sink = tmp_path / "audit.jsonl"
    for dist, modules, entry_points in (
        ("kernel-test-audited", {"test_audited": plugins.AUDITED}, {"audited": "test_audited:plugin"}),
        ("kernel-test-audit-sink", {"test_audit_sink": plugins.AUDIT_SINK}, {"audit-sink": "test_audit_sink"}),
        ("kernel-test-memo-reader", {"test_memo_reader": plugins.MEMO_READER}, {"memo": "test_memo_reader"}),
        ("kernel-test-paths", {"test_paths": plugins.PLUGIN_PATHS}, {"paths": "test_paths"}),
    ):
        make_package(tmp_path / "site", dist, modules, entry_points)
    env = {"KERNEL_TEST_AUDIT_FILE": str(sink)}
    with (
        KernelProcess(base_config(), paths=[tmp_path / "site"], env=env) as k,
        httpx.Client(base_url=k.url, timeout=20) as c,
    ):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        read = c.get("/plugins/audited/read", params={"url": "memo://docs/index.md"}, headers=auth)  # getPath
        assert read.json() == {"content": "# Docs", "etag": "memo-v1"}  # the package's reader
        shipped = wait_for(lambda: sink.exists() and len(sink.read_text().splitlines()) >= 2 and sink.read_text(), 15)
        assert '"eventId": "plugin-start"' in shipped  # the package's sink
