"""services.logger: formatters, child fields, levels and format from config, redaction, crashes."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from kernel.config import SECRET, Config, ConfigError
from kernel.testing import KernelProcess, make_package
from services import logger as mod
from services.config import ReloadingConfig, Secret
from services.logger import (
    REDACTOR,
    JsonFormatter,
    PluginLogger,
    Redactor,
    TextFormatter,
    configure,
    configure_from_config,
    default_format,
    plugin_logger,
    read_logging_settings,
)


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Each test gets the process's logging back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(mod.PLUGIN_LOGGER_PREFIX):
            logging.getLogger(name).setLevel(logging.NOTSET)
    REDACTOR.set_values(())
    mod._schemas.clear()
    if mod._unsubscribe is not None:
        mod._unsubscribe()
        mod._unsubscribe = None


def capture(formatter: logging.Formatter, logger_name: str = "kernel.plugin.demo") -> tuple[io.StringIO, PluginLogger]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    return stream, PluginLogger(logging.getLogger(logger_name), {"plugin": "demo"})


def test_text_lines_carry_plugin_pid_and_fields() -> None:
    out, log = capture(TextFormatter())
    log.child(request="r1").info("hello %s", color="blue")
    line = out.getvalue().strip()
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    \[demo \d+\] hello %s request=r1 color=blue", line), line


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


def test_redaction_of_secret_keys_and_secret_values() -> None:
    REDACTOR.set_values(["hunter2-pw", "tok-abcdef"])
    out, log = capture(JsonFormatter())
    log.info(
        "login with hunter2-pw",
        apiToken="anything",
        note="header tok-abcdef here",
        nested={"password": "x", "ok": "tok-abcdef"},
        items=["hunter2-pw", 3],
    )
    rec = json.loads(out.getvalue())
    assert rec["message"] == f"login with {SECRET}"
    assert rec["apiToken"] == SECRET and rec["note"] == f"header {SECRET} here"
    assert rec["nested"] == {"password": SECRET, "ok": SECRET} and rec["items"] == [SECRET, 3]
    assert "hunter2" not in out.getvalue() and "tok-abcdef" not in out.getvalue()


def test_redaction_reaches_tracebacks_and_other_loggers() -> None:
    REDACTOR.set_values(["s3cr3t-value"])
    out, _ = capture(TextFormatter())
    try:
        raise RuntimeError("connect failed with s3cr3t-value")
    except RuntimeError:
        logging.getLogger("some.library").exception("oops %s", "s3cr3t-value")
    assert "s3cr3t-value" not in out.getvalue() and out.getvalue().count(SECRET) == 3  # message, source line, error


def test_redactor_prefers_longest_match_and_is_a_no_op_when_empty() -> None:
    r = Redactor(["abcd", "abcdefgh"])
    assert r.text("xx abcdefgh yy abcd") == f"xx {SECRET} yy {SECRET}"
    assert Redactor().text("abcd") == "abcd"


def test_default_format_depends_on_kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERNEL_ENV", raising=False)
    assert default_format() == "text"
    monkeypatch.setenv("KERNEL_ENV", "production")
    assert default_format() == "json"
    configure("debug")
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
    assert logging.getLogger().level == logging.DEBUG


def test_levels_and_format_from_config() -> None:
    configure("info", "text")
    config = Config.from_dict(
        {"backend": {"logging": {"level": "WARN", "format": "json", "plugins": {"chatty": {"level": "debug"}}}}}
    )
    configure_from_config(config)
    root = logging.getLogger()
    assert root.level == logging.WARNING and isinstance(root.handlers[0].formatter, JsonFormatter)
    assert plugin_logger("chatty")._logger.isEnabledFor(logging.DEBUG)
    assert not plugin_logger("quiet")._logger.isEnabledFor(logging.INFO)


def test_config_secrets_from_key_names_and_plugin_schemas_are_redacted() -> None:
    class DemoConfig(msgspec.Struct):
        client_id: Secret

    config = Config.from_dict(
        {
            "backend": {"database": {"connection": {"password": "pg-password-1"}}},
            "demo": {"client_id": "cid-0987654"},
        }
    )
    configure_from_config(config, {"demo": DemoConfig})
    out, log = capture(TextFormatter())
    log.info("pg-password-1 and cid-0987654")
    assert out.getvalue().count(SECRET) == 2
    configure_from_config(config)  # schemas given once are remembered
    assert REDACTOR.text("cid-0987654") == SECRET


@pytest.mark.parametrize(
    ("logging_config", "key"),
    [
        ({"level": "loud"}, "backend.logging.level"),
        ({"format": "xml"}, "backend.logging.format"),
        ({"plugins": {"x": {"level": "nope"}}}, "backend.logging.plugins.x.level"),
        ({"levle": "info"}, "backend.logging"),
    ],
)
def test_bad_logging_config_names_the_key(logging_config: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        read_logging_settings(Config.from_dict({"backend": {"logging": logging_config}}))


async def test_reloaded_config_reapplies_levels_and_secrets(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("backend:\n  logging: {level: info}\n")
    config = ReloadingConfig([path], env={})
    configure("info", "text")
    configure_from_config(config)
    path.write_text("backend:\n  logging: {level: error}\nx: {token: new-token-1}\n")
    assert await config.reload()
    assert logging.getLogger().level == logging.ERROR and REDACTOR.text("new-token-1") == SECRET
    path.write_text("backend:\n  logging: {level: loud}\n")
    assert await config.reload()  # a bad logging section is ignored, the rest of the config reloads
    assert logging.getLogger().level == logging.ERROR


async def test_root_logger_factory_applies_the_config_and_plugin_logger_depends_on_it() -> None:
    root_factory, plugin_factory = mod.FACTORIES
    assert [r.id for r in root_factory.deps.values()] == ["core.rootConfig"]
    assert {r.id for r in plugin_factory.deps.values()} == {"core.pluginMetadata", "core.rootLogger"}
    configure("info", "text")
    await root_factory.create(config=Config.from_dict({"backend": {"logging": {"level": "error"}}}))
    assert logging.getLogger().level == logging.ERROR


CRASH = """
import os, sys, threading
from services.logger import configure, install_crash_handlers
configure("info", "text")
install_crash_handlers("crashy")
t = threading.Thread(target=lambda: 1 / 0, name="worker-thread")
t.start(); t.join()
if sys.argv[1] == "segv":
    import faulthandler; faulthandler._sigsegv()
raise RuntimeError("uncaught at top level")
"""


@pytest.mark.parametrize("how", ["raise", "segv"])
def test_crash_handlers_never_lose_a_traceback(how: str) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH, how], check=False, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    err = proc.stderr
    assert re.search(r"CRITICAL \[crashy \d+\] uncaught exception in thread worker-thread", err), err
    assert "ZeroDivisionError" in err
    if how == "raise":
        assert "uncaught exception: RuntimeError: uncaught at top level" in err and "Traceback" in err
    else:
        assert "Fatal Python error: Segmentation fault" in err and "File " in err


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
