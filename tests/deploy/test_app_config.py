"""The app-config the chart renders passes the kernel's own validation, ``kernel config check``, as the
kernel pod would run it: the ConfigMap's file in a folder of its own, the Secrets' files where the
Deployment mounts them relative to it (the config reads them with ``$file``), and the pod's
environment (``KERNEL_POD_IP`` from the downward API). So the chart cannot ship a config the kernel
refuses at start-up; and the check is shown to refuse one.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import VALUE_SETS, Rendered, containers, render

pytestmark = pytest.mark.timeout(900)  # the first test installs the pinned tools (scripts/deploy-tools)

POD_IP = "10.20.30.40"
#: the content of a file of an existing Secret (the user's), by its path in the pod
PLACEHOLDERS = {"url": "redis://:x@redis.cache.svc:6379/0"}


def remote_workers_known() -> bool:
    """Whether this kernel has ``backend.workers.remote`` (issue 20's remote workers)."""
    import kernel.settings.workers as workers

    return hasattr(workers, "RemoteWorkers")


def pod_files(r: Rendered, root: Path) -> tuple[Path, dict[str, str]]:
    """Lay out the kernel pod's config and secret files under ``root`` as its Deployment mounts them;
    return the config file and the container's environment."""
    [deployment] = [
        d for d in r.all("Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "kernel"
    ]
    [kernel] = containers(deployment)
    config_arg = kernel["args"][kernel["args"].index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in kernel["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for name, path in mounts.items():
        volume = volumes[name]
        if "configMap" in volume:
            data = r.one("ConfigMap", volume["configMap"]["name"])["data"]
        elif "secret" in volume:
            made = [s for s in r.all("Secret") if s["metadata"]["name"] == volume["secret"]["secretName"]]
            # an existing Secret (the user's): any content of the right shape
            data = {k: base64.b64decode(v).decode() for k, v in made[0]["data"].items()} if made else {}
            for item in volume["secret"].get("items", []):
                data[item["path"]] = data.pop(item["key"], PLACEHOLDERS.get(item["path"], "a-secret-of-the-user"))
        else:
            continue  # emptyDir
        folder = root / path.lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in data.items():
            (folder / file).write_text(text)
    env: dict[str, str] = {}
    for entry in kernel["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP":
            env[entry["name"]] = POD_IP
    return root / config_arg.lstrip("/"), env


def config_check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=config.parent,
        env={"PATH": "/usr/bin:/bin", "HOME": str(config.parent), **env},
    )  # fmt: skip


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_rendered_app_config_passes_kernel_config_check(
    rendered: dict[str, Rendered], name: str, tmp_path: Path
) -> None:
    r = rendered[name]
    remote: Any = r.app_config()["backend"]["workers"].get("remote")
    if remote is not None and not remote_workers_known():
        pytest.skip("backend.workers.remote is not in this kernel yet (issue 20's remote workers, built alongside)")
    config, env = pod_files(r, tmp_path)
    done = config_check(config, env)
    assert done.returncode == 0, f"{name}: kernel config check refused the chart's app-config:\n{done.stderr}"
    assert done.stdout.startswith("config OK"), done.stdout


def test_config_check_refuses_a_bad_app_config(tools: Path, keys: Path, tmp_path: Path) -> None:
    """The test above can fail: a value the kernel refuses, given through appConfig, is named."""
    bad = render(tools, "defaults", keys, "--set", "appConfig.backend.gateway.processes=many")
    config, env = pod_files(bad, tmp_path)
    done = config_check(config, env)
    assert done.returncode == 2
    assert "backend.gateway" in done.stderr
