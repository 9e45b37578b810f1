"""kernel.settings.logs: ``backend.logging``, whose mistakes name the key."""

from __future__ import annotations

import re

import pytest

from kernel.config import Config, ConfigError
from kernel.settings import read_logging_settings


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
