"""The discovery child's messages to the ``kernel`` command: one JSON object a line on its stdout.

Before it runs a package's code (an import, a hook, a config check) the child sends a
``StepFrame`` naming it; at the end, one ``Report``. No I/O here: the codec only.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kernel.config import ConfigSnapshot
from kernel.registry import LoadFailure, PluginEntry, Step

__all__ = ["Frame", "Report", "Request", "StepFrame", "decode_frame", "encode_frame"]


class Request(msgspec.Struct, frozen=True):
    """What the ``kernel`` command asks of the child (JSON on its stdin)."""

    #: the command's pid: the child dies with it
    parent: int
    #: entry points (``ep_key``) not to load: they killed or hung an earlier run
    skip: list[str] = []
    #: the config to check every plugin's ``config_schema`` against (``kernel config check``)
    config: ConfigSnapshot | None = None
    #: seconds one step may take; the child dumps its stack shortly before the parent kills it
    timeout: float = 0.0


class StepFrame(msgspec.Struct, frozen=True, tag="step"):
    """The child is about to run this code: should it never report back, this is the culprit."""

    step: Step


class Report(msgspec.Struct, frozen=True, tag="report"):
    """Everything the ``kernel`` command needs to know of the installed packages, as data."""

    plugins: list[PluginEntry]
    #: hook providers, by ``<distribution>:<entry point name>`` and by ``ep_key`` (the only ones the command imports)
    providers: list[str]
    provider_eps: list[str]
    failures: list[LoadFailure]
    #: problems that load anyway (an entry point named otherwise than its plugin's id)
    warnings: list[str]
    #: plugins declaring a ``config_schema``
    schemas: list[str] = []
    #: config paths the plugins' schemas mark secret (``kernel.config.plugin_secret_paths``), for redaction
    secret_paths: list[str] = []
    #: plugin id -> the JSON Schema of its ``config_schema`` (``kernel config schema``)
    json_schemas: dict[str, dict[str, Any]] = {}
    #: the problems of ``Request.config`` against the plugins' schemas (each naming plugin, key, file, package)
    config_problems: list[str] = []
    #: filled in by the ``kernel`` command: entry points (``ep_key``) left out because they killed or hung a
    #: child, with their failure (also in ``failures``)
    lost: dict[str, LoadFailure] = {}


Frame = StepFrame | Report

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Frame)


def encode_frame(frame: Frame) -> bytes:
    return _ENCODER.encode(frame) + b"\n"


def decode_frame(line: bytes) -> Frame:
    """One line of the child's output; ``msgspec.DecodeError`` when it is not a frame."""
    frame: Frame = _DECODER.decode(line)
    return frame
