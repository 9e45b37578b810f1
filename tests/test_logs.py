"""kernel.logs: the process's formatters, levels and format from config, secret redaction, crash handlers."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from kernel.api import Secret
from kernel.config import SECRET, Config, ReloadingConfig
from kernel.logs import (
    REDACTOR,
    REQUEST_ID,
    JsonFormatter,
    Redactor,
    TextFormatter,
    configure,
    configure_from_config,
    default_format,
)
from kernel_services.logger import plugin_logger
from tests.logs_support import capture, restored_logging


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Each test gets the process's logging back as it was."""
    with restored_logging():
        yield


def test_text_lines_carry_plugin_pid_and_fields() -> None:
    out, log = capture(TextFormatter())
    log.child(request="r1").info("hello %s", color="blue")
    line = out.getvalue().strip()
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    \[demo \d+\] hello %s request=r1 color=blue", line), line


def test_lines_logged_for_a_request_carry_its_id() -> None:
    out, log = capture(JsonFormatter())
    token = REQUEST_ID.set("req-42")
    try:
        log.info("inside")
        log.info("given", request_id="own")  # a field of the same name is kept
    finally:
        REQUEST_ID.reset(token)
    log.info("outside")
    inside, given, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["request_id"] == "req-42" and given["request_id"] == "own" and "request_id" not in outside
    text, text_log = capture(TextFormatter())
    token = REQUEST_ID.set("req-43")
    try:
        text_log.info("hello")
    finally:
        REQUEST_ID.reset(token)
    assert text.getvalue().strip().endswith("hello request_id=req-43")


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


CRASH = """
import os, sys, threading
from kernel.logs import configure, install_crash_handlers
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
