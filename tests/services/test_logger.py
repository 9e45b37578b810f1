"""kernel_services.logger: the core.logger service (structured fields, child loggers) and its logs in a real kernel."""

from __future__ import annotations

import json
import logging
import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.config import SECRET, Config
from kernel.logs import JsonFormatter, configure, configure_from_config
from kernel.testing import KernelProcess, make_package
from kernel_services import logger as mod
from tests.logs_support import capture, restored_logging


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Each test gets the process's logging back as it was."""
    with restored_logging():
        yield


def test_json_lines_and_child_fields_override() -> None:
    out, log = capture(JsonFormatter())
    log.child(a=1, b=2).child(b=3).warning("careful", c=[1, 2])
    rec = json.loads(out.getvalue())
    assert rec["level"] == "warning" and rec["message"] == "careful" and rec["plugin"] == "demo"
    assert (rec["a"], rec["b"], rec["c"]) == (1, 3, [1, 2])
    assert rec["logger"] == "kernel.plugin.demo" and isinstance(rec["pid"], int)


def test_exception_adds_the_traceback() -> None:
    out, log = capture(JsonFormatter())
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("it failed")
    rec = json.loads(out.getvalue())
    assert rec["level"] == "error" and "ValueError: bad value" in rec["stack"]


async def test_root_logger_factory_uses_the_logging_the_kernel_configured_and_plugin_logger_depends_on_it() -> None:
    root_factory, plugin_factory = mod.FACTORIES
    assert [r.id for r in root_factory.deps.values()] == ["core.rootConfig"]
    assert {r.id for r in plugin_factory.deps.values()} == {"core.pluginMetadata", "core.rootLogger"}
    config = Config.from_dict({"backend": {"logging": {"level": "error"}}})
    configure("info", "text")  # what every kernel process does at start (kernel.logs), not the service
    configure_from_config(config)
    await root_factory.create(config=config)
    assert logging.getLogger().level == logging.ERROR


# ---------------------------------------------------------------------------- in a real kernel

LOGDEMO = """
from kernel.api import core_services, create_plugin

plugin = create_plugin("logdemo")


@plugin.init(logger=core_services.logger, config=core_services.root_config)
def init(logger, config):
    logger.child(step="init").info("hello from logdemo", color="blue", apiToken="field-secret")
    logger.info("db password is " + config.get_string("logdemo.db.password"))
"""


CRASHY = """
from kernel.api import core_services, create_plugin

plugin = create_plugin("crashy")


def explode():
    raise RuntimeError("crashy init exploded")


@plugin.init(logger=core_services.logger)
def init(logger):
    explode()
"""


def _wait_output(k: KernelProcess, pattern: str, timeout: float = 20.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, k.output(), re.MULTILINE)
        if m is not None:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in the output:\n{k.output()}")


def test_worker_logs_and_tracebacks_reach_the_kernel_output(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_package(
        site,
        "kernel-test-logdemo",
        {"test_logdemo": textwrap.dedent(LOGDEMO)},
        {"logdemo": "test_logdemo:plugin"},
    )
    make_package(site, "kernel-test-crashy", {"test_crashy": textwrap.dedent(CRASHY)}, {"crashy": "test_crashy:plugin"})
    config = {
        "backend": {"startup": {"default": {"onPluginBootFailure": "continue"}}},
        "logdemo": {"db": {"password": "db-password-42"}},
    }
    k = KernelProcess(config, paths=[site], env={"KERNEL_ENV": "development"}).start(wait=False)
    try:
        m = _wait_output(k, r"INFO +\[logdemo (\d+)\] hello from logdemo step=init color=blue apiToken=(\S+)$")
        assert k.proc is not None and int(m.group(1)) != k.proc.pid  # the worker's pid, not the kernel's
        assert m.group(2) == SECRET
        _wait_output(k, rf"\[logdemo \d+\] db password is {re.escape(SECRET)}$")
        _wait_output(k, r"plugin 'crashy' failed to start")
        _wait_output(k, r"Traceback[\s\S]*in explode\n[\s\S]*RuntimeError: crashy init exploded")
        assert k.proc.poll() is None  # onPluginBootFailure: continue keeps the kernel up
        out = k.output()
        assert "field-secret" not in out and "db-password-42" not in out
    finally:
        k.stop()
