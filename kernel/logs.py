"""The process's logging: one stderr handler, text or JSON lines, levels from config, secret redaction, crash handlers.

Every kernel process (supervisor, gateway, worker) calls ``configure`` at start and, once it
has the config, ``configure_from_config``: ``backend.logging.level`` (default: the
``KERNEL_LOG_LEVEL`` env var, else info), ``backend.logging.plugins.<id>.level`` and
``backend.logging.format`` (text|json; default json when ``KERNEL_ENV=production``, else text).

``REQUEST_ID`` is the request a line belongs to: the gateway sets it for each request
(``X-Request-Id``) and each worker for the request it handles, and both formatters add it to
every line logged meanwhile (``request_id``), whoever logs it.

Redaction happens in the formatters, so it covers every logger of the process, whoever
provides the ``core.logger`` service: a field whose key looks secret (``is_secret_key``) is
shown as ``<secret>``, and any configured secret value (``secret_values``) is replaced in
messages, fields and tracebacks.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Final

import msgspec

from kernel.config import SECRET, Config, is_secret_key, plugin_secret_paths, secret_values
from kernel.errors import ConfigError
from kernel.settings import PLUGIN_LOGGER_PREFIX, ConfigReader, LoggingSettings, read_logging_settings

__all__ = [
    "LEVELS",
    "PLUGIN_LOGGER_PREFIX",
    "REDACTOR",
    "REQUEST_ID",
    "JsonFormatter",
    "LineFormatter",
    "Redactor",
    "TextFormatter",
    "apply_settings",
    "configure",
    "configure_from_config",
    "default_format",
    "install_crash_handlers",
    "read_logging_settings",
    "valid_request_id",
]

#: ``backend.logging`` level names (``kernel.settings.LOG_LEVELS``) to stdlib levels
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


#: the id of the request the running task serves (``X-Request-Id``), added to its log lines
REQUEST_ID: ContextVar[str | None] = ContextVar("kernel_request_id", default=None)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=@-]{1,200}")


def valid_request_id(value: bytes | str) -> str | None:
    """``value`` as a request id if it is one we pass on (1 to 200 of ``A-Za-z0-9._:+/=@-``), else ``None``."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text if _REQUEST_ID.fullmatch(text) else None


class Redactor:
    """Replaces known secret values in text and secret-looking keys in fields; cheap when idle."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._re: re.Pattern[str] | None = None
        self.set_values(values)

    def set_values(self, values: Iterable[str]) -> None:
        found = sorted({v for v in values if v}, key=len, reverse=True)  # longest first
        self._re = re.compile("|".join(map(re.escape, found))) if found else None

    def text(self, text: str) -> str:
        return self._re.sub(SECRET, text) if self._re is not None and text else text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, Mapping):
            return self.fields(value)
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return self.text(str(value)) if self._re is not None else value

    def fields(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        pattern = self._re
        for k, v in fields.items():  # a loop with the common types inline: it runs for every line
            kind = type(v)
            if _is_secret_key(k):
                out[k] = SECRET
            elif kind is str:
                out[k] = pattern.sub(SECRET, v) if pattern is not None and v else v
            elif kind is int or kind is float or v is None:
                out[k] = v
            else:
                out[k] = self.value(v)
        return out


_SECRET_KEYS: dict[Any, bool] = {}  # field name -> is_secret_key (the same few names on every line)


def _is_secret_key(key: Any) -> bool:
    found = _SECRET_KEYS.get(key)
    if found is None:
        found = is_secret_key(str(key))
        if len(_SECRET_KEYS) < 4096:
            _SECRET_KEYS[key] = found
    return found


REDACTOR: Final = Redactor()
"""The process's redactor, used by both formatters unless they are given their own."""


# ---------------------------------------------------------------------------- formatters


class LineFormatter(logging.Formatter):
    """The kernel's formatters: redaction and the request id, then the layout (``render``).

    ``line`` makes the same line from its parts without a ``LogRecord``: the access log's way
    when the process's one handler is the kernel's (``kernel.gateway.accesslog``).
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor if redactor is not None else REDACTOR

    def format(self, record: logging.LogRecord) -> str:
        r = self.redactor
        stack = r.text(self.formatException(record.exc_info)) if record.exc_info else None
        fields = getattr(record, "fields", {})
        return self.line(
            record.name, record.levelname, record.created, record.process, record.getMessage(), fields, stack
        )

    def line(
        self,
        name: str,
        level: str,
        created: float,
        pid: int | None,
        message: str,
        fields: Mapping[str, Any],
        stack: str | None = None,
    ) -> str:
        """The line of a record of these parts (``stack`` already redacted)."""
        r = self.redactor
        redacted = r.fields(fields)
        request_id = REQUEST_ID.get()
        if request_id is not None and "request_id" not in redacted:
            redacted["request_id"] = request_id
        return self.render(name, level, created, pid, r.text(message), redacted, stack)

    def render(
        self,
        name: str,
        level: str,
        created: float,
        pid: int | None,
        message: str,
        fields: dict[str, Any],
        stack: str | None,
    ) -> str:
        raise NotImplementedError


class TextFormatter(LineFormatter):
    """``time level [plugin pid] message key=value`` for development."""

    _second = -1
    _when = ""

    def render(
        self,
        name: str,
        level: str,
        created: float,
        pid: int | None,
        message: str,
        fields: dict[str, Any],
        stack: str | None,
    ) -> str:
        plugin = fields.pop("plugin", name)
        second = int(created)
        if second != self._second:  # one strftime per second, not per line
            self._second, self._when = second, time.strftime("%H:%M:%S", time.localtime(second))
        line = f"{self._when} {level:<7} [{plugin} {pid}] {message}"
        if fields:
            line += " " + " ".join([f"{k}={v}" for k, v in fields.items()])
        if stack:
            line += "\n" + stack
        return line


def _as_text(value: Any) -> str:
    return str(value)


#: msgspec's encoder: a third of ``json.dumps``'s time, on every line (what it cannot encode becomes text)
_json = msgspec.json.Encoder(enc_hook=_as_text).encode


class JsonFormatter(LineFormatter):
    """One JSON object per line for production."""

    def render(
        self,
        name: str,
        level: str,
        created: float,
        pid: int | None,
        message: str,
        fields: dict[str, Any],
        stack: str | None,
    ) -> str:
        out: dict[str, Any] = {"ts": created, "level": level.lower(), "logger": name, "pid": pid, "message": message}
        out.update(fields)
        if stack:
            out["stack"] = stack
        return _json(out).decode()


def default_format() -> str:
    return "json" if os.environ.get("KERNEL_ENV") == "production" else "text"


def configure(level: str = "info", fmt: str | None = None) -> None:
    """Set up the process's logging: one stderr handler, text or JSON lines (see ``default_format``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if (fmt or default_format()) == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))


# ---------------------------------------------------------------------------- from config

_configured_plugins: set[str] = set()
_schemas: dict[str, Any] = {}  # every schema configure_from_config was given, for secret paths
_secret_paths: set[str] = set()  # and every secret path it was given without a schema
_unsubscribe: Callable[[], None] | None = None


def apply_settings(settings: LoggingSettings, secrets: Iterable[str] = ()) -> None:
    """Apply levels, format and secret values to this process's logging."""
    root = logging.getLogger()
    if settings.level is not None:
        root.setLevel(LEVELS[settings.level.lower()])
    if settings.format is not None:
        formatter = JsonFormatter() if settings.format == "json" else TextFormatter()
        for handler in root.handlers:
            handler.setFormatter(formatter)
    for pid in _configured_plugins - set(settings.plugins):
        logging.getLogger(PLUGIN_LOGGER_PREFIX + pid).setLevel(logging.NOTSET)
    for pid, own in settings.plugins.items():
        level = LEVELS[own.level.lower()] if own.level else logging.NOTSET
        logging.getLogger(PLUGIN_LOGGER_PREFIX + pid).setLevel(level)
    _configured_plugins.clear()
    _configured_plugins.update(settings.plugins)
    REDACTOR.set_values(secrets)


def configure_from_config(
    config: ConfigReader, schemas: Mapping[str, Any] | None = None, *, secret_paths: Iterable[str] = ()
) -> None:
    """Apply ``backend.logging`` and the config's secrets (``schemas``: plugin id → config schema).

    Call after ``configure``. A process that holds no schema (the supervisor: the plugins'
    schemas stay in the discovery child) passes their ``secret_paths`` instead
    (``plugin_secret_paths``). Both, given once, are remembered for later calls. When ``config``
    has ``subscribe`` (a ``LiveConfig``), changes re-apply it; a mistaken new ``backend.logging``
    is ignored.
    """
    global _unsubscribe
    _schemas.update(schemas or {})
    _secret_paths.update(secret_paths)
    paths = [*plugin_secret_paths(_schemas), *sorted(_secret_paths)]

    def apply(cfg: ConfigReader) -> None:
        apply_settings(read_logging_settings(cfg), secret_values(cfg.get(), paths))

    apply(config)
    subscribe: Callable[[Callable[[Config], None]], Callable[[], None]] | None
    subscribe = getattr(config, "subscribe", None)
    if subscribe is not None:
        if _unsubscribe is not None:
            _unsubscribe()

        def on_change(new: Config) -> None:
            try:
                apply(new)
            except ConfigError as exc:
                logging.getLogger("kernel").warning("logging config not reloaded: %s", exc)

        _unsubscribe = subscribe(on_change)


# ---------------------------------------------------------------------------- crashes


def install_crash_handlers(name: str) -> None:
    """Never lose a traceback: uncaught exceptions are logged (tagged ``name``), and a fatal signal
    (segfault, abort) dumps every thread's stack to stderr via ``faulthandler``."""
    faulthandler.enable(sys.stderr, all_threads=True)
    logger = logging.getLogger(PLUGIN_LOGGER_PREFIX + name)

    def log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None, where: str = "") -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        try:
            logger.critical(
                "uncaught exception%s: %s: %s",
                where,
                kind.__name__,
                exc,
                exc_info=(kind, exc, tb),
                extra={"fields": {"plugin": name}},
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
        except Exception:  # logging itself broken: fall back to the raw traceback
            sys.__excepthook__(kind, exc, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            thread = args.thread.name if args.thread is not None else "?"
            log_uncaught(args.exc_type, args.exc_value, args.exc_traceback, f" in thread {thread}")

    sys.excepthook = log_uncaught
    threading.excepthook = thread_hook
