"""kernel.settings.reload: ``backend.config.reload``, its defaults and its errors."""

from __future__ import annotations

import pytest

from kernel.config import Config, ConfigError
from kernel.settings import ReloadSettings, read_reload_settings


def test_reload_settings_defaults_and_errors() -> None:
    assert read_reload_settings(Config.from_dict({})) == ReloadSettings()
    cfg = Config.from_dict({"backend": {"config": {"reload": {"enabled": True, "intervalSeconds": "5"}}}})
    assert read_reload_settings(cfg) == ReloadSettings(enabled=True, interval_seconds=5.0)
    with pytest.raises(ConfigError, match="backend.config.reload.pollSeconds"):
        read_reload_settings(Config.from_dict({"backend": {"config": {"reload": {"pollSeconds": 0}}}}))
    with pytest.raises(ConfigError, match="backend.config.reload"):
        read_reload_settings(Config.from_dict({"backend": {"config": {"reload": {"enabeld": True}}}}))
