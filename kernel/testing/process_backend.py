"""``start_test_backend(mode="process")``: the plugins under test in a real ``kernel serve``.

A supervisor, a gateway and one worker process per plugin, over ZeroMQ, as in production; the test
talks to it over a real socket (``backend.client``, ``backend.url``). Installed plugins (entry points)
are found as they are; a plugin that is not installed but importable (defined in a module, a test
module too) is installed for this kernel only, through a throw-away ``.dist-info`` on its
``PYTHONPATH``. Every other installed plugin runs too (as in any ``kernel serve``); their boot failures
are tolerated (``onPluginBootFailure: continue``), those of the plugins under test are not.

Services are the installed ones, configured by ``config`` (e.g. ``test_database.config``): ``services=``
objects cannot cross into other processes. Mock credentials are accepted by the gateway through
``kernel.testing.credentials_hook`` (its three locks are documented there).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import httpx

from kernel.plugin import BackendModule, BackendPlugin
from kernel.registry import ENTRY_POINT_GROUP
from kernel.settings import merge
from kernel.testing.credentials_hook import CONFIG_KEY, MOCK_CREDENTIALS_ENV
from kernel.testing.features import Feature, ServiceLike, TestBackend, split_features
from kernel.testing.processes import KernelProcess, make_package

__all__ = ["ProcessBackend", "start_process"]

HOOK_MODULE = "kernel.testing.credentials_hook"
DISTRIBUTION = "kernel-testing-backend"


class ProcessBackend(TestBackend):
    """A real kernel serving the plugins under test: ``kernel`` (its ``KernelProcess``: ``output()``...)."""

    mode: Literal["in-process", "process"] = "process"

    def __init__(self, kernel: KernelProcess, site: Path) -> None:
        super().__init__(kernel.url, httpx.AsyncClient(base_url=kernel.url, timeout=30))
        self.kernel = kernel
        self._site = site
        self._stopped = False

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.client.aclose()
            await asyncio.to_thread(self.kernel.stop)
        finally:
            shutil.rmtree(self._site, ignore_errors=True)


def _installed(feature: object) -> bool:
    """Whether an entry point of ``kernel.plugins`` already provides ``feature``."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if isinstance(feature, BackendPlugin) and ep.name != feature.id:
            continue  # plugins are found by their id (the kernel warns when names differ)
        if isinstance(feature, ModuleType) and ep.value.split(":")[0].strip() != feature.__name__:
            continue
        try:
            if ep.load() is feature:
                return True
        except Exception:  # a broken package is the kernel's to report
            continue
    return False


def _importable(feature: object) -> tuple[str, Path]:
    """``module:attribute`` (or ``module``) naming ``feature``, and the ``sys.path`` entry that imports it."""
    if isinstance(feature, ModuleType):
        name, value = feature.__name__, feature.__name__
    else:
        for module_name, module in list(sys.modules.items()):
            if module_name == "__main__" or module is None:
                continue
            attr = next((k for k, v in list(vars(module).items()) if v is feature), None)
            if attr is not None:
                name, value = module_name, f"{module_name}:{attr}"
                break
        else:
            raise TypeError(f"mode='process': {feature!r} is not installed, nor a global of any imported module")
    file = getattr(sys.modules[name], "__file__", None)
    if file is None:
        raise TypeError(f"mode='process': module {name!r} of {feature!r} has no file to import it from")
    path = Path(file).resolve()
    depth = len(name.split(".")) - (0 if path.stem == "__init__" else 1)
    return value, path.parents[depth]


def _entry_name(feature: object) -> str:
    if isinstance(feature, BackendPlugin):
        return feature.id
    if isinstance(feature, BackendModule):
        return f"{feature.plugin_id}-{feature.module_id}"
    return f"test-hooks-{getattr(feature, '__name__', type(feature).__name__).replace('.', '-')}"


async def start_process(
    features: list[Feature],
    services: list[ServiceLike],
    config: Mapping[str, Any] | None,
    dev: bool,
    timeout: float,
) -> ProcessBackend:
    if services:
        raise TypeError(
            "mode='process' runs the installed services: configure them with config= "
            "(e.g. test_database.config), services= cannot cross into the kernel's processes"
        )
    plugins, modules, providers = split_features(features)
    site = Path(tempfile.mkdtemp(prefix="kernel-test-backend-"))
    points = {"kernel-testing-mock-credentials": HOOK_MODULE}
    paths: list[Path | str] = [site]
    for feature in [*plugins, *(m for ms in modules.values() for m in ms), *providers]:
        if not _installed(feature):
            value, root = _importable(feature)
            points[_entry_name(feature)] = value
            if root not in paths:
                paths.append(root)
    make_package(site, DISTRIBUTION, {}, points)
    startup = {p.id: {"onPluginBootFailure": "abort"} for p in plugins}
    defaults: dict[str, Any] = {
        "backend": {
            "database": {"client": "sqlite", "connection": {"directory": str(site / "data")}},
            "startup": {"default": {"onPluginBootFailure": "continue"}, "plugins": startup},
            "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 3, "shutdownGrace": 3, "killTimeout": 2},
        }
    }
    key = CONFIG_KEY.split(".")
    cfg = merge(merge(defaults, dict(config or {})), {key[0]: {key[1]: {key[2]: True}}})
    env = {MOCK_CREDENTIALS_ENV: "1", **({"KERNEL_ENV": "development"} if dev else {})}
    kernel = KernelProcess(cfg, paths=paths, env=env, cwd=site)
    try:
        await asyncio.to_thread(kernel.start, True, timeout)
    except BaseException:
        await asyncio.to_thread(kernel.stop)
        shutil.rmtree(site, ignore_errors=True)
        raise
    return ProcessBackend(kernel, site)
