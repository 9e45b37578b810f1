"""The scan child (``python -m kernel.plugin_scan``): imports every installed package, reports data.

It runs every piece of package code the kernel needs before start-up: the import of each
``kernel.plugins`` entry point, the providers' ``kernel_provide_services`` (the service graph
check), and each plugin's ``config_schema`` (its secret paths; its validation against the config
when one is given). Before each, it sends a ``StepFrame``; at the end, the ``Report``. The frames
go to the stdout it was given, kept on a private descriptor: the packages' own prints (fd 1) go
to stderr with the rest of their output, so nothing they write can corrupt a frame.

It ends with ``os._exit``: a thread a package started at import cannot keep it alive.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, BinaryIO

import msgspec

from kernel.config import Config, plugin_secret_paths, validate_plugin_config
from kernel.config.json_schema import part
from kernel.launch import die_with_parent
from kernel.plugin_scan.report import Frame, Report, Request, StepFrame, encode_frame
from kernel.registry import PluginEntry, Step, load_registry

#: the child dumps every thread's stack at this fraction of the step timeout (the parent kills it at 1.0)
_DUMP_AT = 0.9


def discover_here(request: Request, send: Callable[[Frame], None]) -> Report:
    """Load everything ``request`` does not skip, announcing each step; the report as data."""
    config = Config.from_snapshot(request.config) if request.config is not None else None

    def before(step: Step) -> None:
        send(StepFrame(step))
        if request.timeout > 0:
            faulthandler.dump_traceback_later(request.timeout * _DUMP_AT)

    reg = load_registry(skip=request.skip, before=before, log_warnings=False)
    schemas: list[str] = []
    secret_paths: list[str] = []
    json_schemas: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for entry in sorted(reg.plugins.values(), key=lambda e: e.id):
        schema = entry.plugin.config_schema
        if schema is None:
            continue
        before(Step(entry.entry_point, entry.id, entry.distribution, "the check of its config_schema"))
        schemas.append(entry.id)
        secret_paths.extend(plugin_secret_paths({entry.id: schema}))
        try:
            json_schemas[entry.id] = part(entry.id, schema)
        except (TypeError, ValueError):  # not a msgspec type: its config check says so
            pass
        if config is not None:
            found = validate_plugin_config(config, entry.id, schema)
            problems.extend(f"{e} (package '{entry.distribution}')" for e in found)
    faulthandler.cancel_dump_traceback_later()
    return Report(
        plugins=[_with_secret_paths(p.entry(), secret_paths) for p in reg.plugins.values()],
        providers=reg.providers,
        provider_eps=reg.provider_eps,
        failures=reg.failures,
        warnings=reg.warnings,
        schemas=schemas,
        secret_paths=secret_paths,
        json_schemas=json_schemas,
        config_problems=problems,
    )


def _with_secret_paths(entry: PluginEntry, secret_paths: list[str]) -> PluginEntry:
    """``entry`` knowing the schema-marked secrets of the sections it declares it reads (for its scoping)."""
    reads = [r.split(".") for r in entry.reads()]

    def overlaps(path: str) -> bool:  # one is the other or below it; ``*`` is any key
        parts = path.split(".")
        return any(all(a == "*" or a == b for a, b in zip(parts, r, strict=False)) for r in reads)

    return replace(entry, secret_paths=tuple(p for p in secret_paths if overlaps(p)))


def main() -> None:
    """The child's whole life: read the request, discover, write the report, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    request = msgspec.json.decode(sys.stdin.buffer.read(), type=Request)
    die_with_parent(request.parent)
    channel: BinaryIO = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # what packages print goes to stderr, never between two frames
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    faulthandler.enable(sys.stderr, all_threads=True)  # a crash at import shows where

    def send(frame: Frame) -> None:
        channel.write(encode_frame(frame))

    send(discover_here(request, send))
    sys.stderr.flush()
    os._exit(0)
