"""Backstage-style app-config: the kernel's loading, reading, secrets, plugin schema checks and live reloading.

* ``loading``: ``load_config`` merges YAML/JSON files (``parsing``, ``directives``: ``${VAR}``,
  ``$env``, ``$file``, ``$include``) and ``APP_CONFIG_*`` environment overrides;
* ``reader``: ``Config``, the immutable view with typed getters that name each key's source,
  and its wire form ``ConfigSnapshot``;
* ``secrets``: which values are secret, ``redact_secrets``, ``secret_values``;
* ``schemas``: ``validate_plugin_config`` against a plugin's ``config_schema``;
* ``live``: ``LiveConfig``, a ``RootConfig`` whose config is replaced at run time;
  ``reloading``: ``ReloadingConfig``, one that watches its files.

``merge`` (the deep-merge of the layers) and ``read_section`` are re-exported from the contract's
``kernel.settings.base``: ``kernel.api`` exports ``merge`` as ``merge_config``, and a contract module
may not import this package (which brings in asyncio).
"""

from __future__ import annotations

from kernel.config.live import LiveConfig, Subscriber
from kernel.config.loading import ENV_PREFIX, load_config
from kernel.config.reader import Config, ConfigSnapshot
from kernel.config.reloading import ReloadingConfig
from kernel.config.schemas import validate_plugin_config
from kernel.config.secrets import (
    MIN_SECRET_LENGTH,
    SECRET,
    SECRET_KEY_RE,
    is_secret_key,
    plugin_secret_paths,
    redact_secrets,
    schema_secret_paths,
    secret_values,
)
from kernel.errors import ConfigError
from kernel.settings import ReloadSettings, merge, read_reload_settings, read_section

__all__ = [
    "ENV_PREFIX",
    "MIN_SECRET_LENGTH",
    "SECRET",
    "SECRET_KEY_RE",
    "Config",
    "ConfigError",
    "ConfigSnapshot",
    "LiveConfig",
    "ReloadSettings",
    "ReloadingConfig",
    "Subscriber",
    "is_secret_key",
    "load_config",
    "merge",
    "plugin_secret_paths",
    "read_reload_settings",
    "read_section",
    "redact_secrets",
    "schema_secret_paths",
    "secret_values",
    "validate_plugin_config",
]
