"""The ``auth`` plugin for kernel: Backstage-compatible user tokens (see the package README)."""

from __future__ import annotations

from .plugin import plugin
from .tokens import limited_token_of

__all__ = ["limited_token_of", "plugin"]
