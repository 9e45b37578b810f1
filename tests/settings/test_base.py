"""kernel.settings.base: the config helpers every section uses, and that the contract exports."""

from __future__ import annotations

import pytest

from kernel.config import Config, ConfigError
from kernel.settings import Listen, merge, read_section


def test_merge_deep_merges_objects_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge(base, {"a": {"c": [3], "e": None}, "d": {"x": 1}}) == {
        "a": {"b": 1, "c": [3], "e": None},
        "d": {"x": 1},
    }
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # the input is untouched
    assert merge({"a": 1}, 2) == 2


def test_read_section_converts_and_names_the_full_key() -> None:
    config = Config.from_dict({"backend": {"listen": {"port": "8080"}}})
    assert read_section(config, "backend.listen", Listen) == Listen(port=8080)
    assert read_section(config, "backend.absent", Listen) == Listen()
    with pytest.raises(ConfigError, match=r"Invalid config under 'backend.listen': .*`backend.listen.host`"):
        read_section(Config.from_dict({"backend": {"listen": {"host": 1}}}), "backend.listen", Listen)


def test_read_section_names_list_items_under_the_key() -> None:
    config = Config.from_dict({"items": [{"port": 1}, {"port": "x"}]})
    with pytest.raises(ConfigError, match=r"Invalid config under 'items': .* - at `items\[1\]\.port`"):
        read_section(config, "items", list[Listen])
