"""Rendering deploy/helm/kernel with a real ``helm template``, and reading what it rendered.

The tools (helm, checkov, hadolint) come from ``scripts/deploy-tools``, pinned there; it installs them
once into the user's cache (about two minutes) and then answers at once. ``VALUE_SETS`` are the
configurations every test renders: the chart's defaults, remote workers for two plugins with their
autoscalers (``values/remote.yaml``, CURVE keys made here), and the edge (``values/edge.yaml``:
Ingress, HTTPRoute, ServiceMonitor, the kernel's own autoscaler, existing Secrets only).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
import zmq.auth

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "kernel"
VALUES = Path(__file__).resolve().parent / "values"
SETUP = ROOT / "scripts" / "deploy-tools"
RELEASE = "prod"
NAMESPACE = "platform"
#: the plugins values/remote.yaml gives remote workers
REMOTE_PLUGINS = ("hello", "insights")

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "remote": ["remote.yaml", "keys"],
    "edge": ["edge.yaml"],
}


def install_tools() -> Path:
    """The folder holding ``helm``, ``checkov`` and ``hadolint`` (installed on first use)."""
    done = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"scripts/deploy-tools failed:\n{done.stdout}\n{done.stderr}"
    return Path(done.stdout.strip().splitlines()[-1])


def make_keys(folder: Path) -> Path:
    """A values file with fresh CURVE certificates (pyzmq's format, as ``kernel keys generate`` writes
    them) for the kernel and each of ``REMOTE_PLUGINS``, given inline: the chart makes the Secrets."""
    folder.mkdir(parents=True, exist_ok=True)
    workers: dict[str, dict[str, str]] = {}
    server: dict[str, str] = {}
    for name in ("server", *REMOTE_PLUGINS):
        public, secret = zmq.auth.create_certificates(str(folder), name)
        entry = {"public": Path(public).read_text(), "secret": Path(secret).read_text()}
        if name == "server":
            server = entry
        else:
            workers[name] = entry
    path = folder / "keys.yaml"
    path.write_text(yaml.safe_dump({"curve": {"inline": {"server": server, "workers": workers}}}))
    return path


@dataclass
class Rendered:
    """One ``helm template`` run: its output and the objects in it."""

    name: str
    text: str
    objects: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: {len(found)} {kind} named {name}: {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in self.objects)

    def app_config(self) -> dict[str, Any]:
        """The app-config the kernel pods mount (the ConfigMap's ``app-config.yaml``)."""
        text = self.one("ConfigMap", f"{RELEASE}-kernel-app-config")["data"]["app-config.yaml"]
        config: dict[str, Any] = yaml.safe_load(text)
        return config


def helm(tools: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools / "helm"), *args], capture_output=True, text=True, timeout=120)


def render(tools: Path, name: str, keys: Path, *extra: str) -> Rendered:
    """``helm template`` of the chart with value set ``name`` (and ``extra`` arguments); fails on an error."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for part in VALUE_SETS[name]:
        args += ["-f", str(keys if part == "keys" else VALUES / part)]
    done = helm(tools, *args, *extra)
    assert done.returncode == 0, f"helm template ({name}) failed:\n{done.stderr}"
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    return Rendered(name, done.stdout, objects)


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a ``matchLabels`` selector picks objects with ``labels``."""
    return all(labels.get(key) == value for key, value in selector.items())
