"""Helpers for the kernel.config suites: config files written into a test's tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated, Any

import msgspec

from kernel.api import Secret
from kernel.config import Config, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config([write(tmp_path / "app-config.yaml", text)], env=env or {})


class Endpoint(msgspec.Struct, rename="camel"):
    url: str
    bearer_value: Secret | None = None


class Schema(msgspec.Struct, rename="camel"):
    """A plugin config schema with secrets marked in every way a schema can mark them."""

    client_key: Secret
    port: int = 8080
    endpoints: dict[str, Endpoint] = {}
    mirrors: list[Endpoint] = []
    vault: Annotated[dict[str, Any], msgspec.Meta(extra={"secret": True})] = {}
    child: Schema | None = None  # recursive schemas are fine
