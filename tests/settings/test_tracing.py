"""kernel.settings.tracing: ``backend.tracing``, off by default, its checks, and the extra it needs."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.config import Config, ConfigError
from kernel.settings import OtlpSettings, Settings, TracingSettings, read_settings
from kernel.settings import tracing as tracing_settings


def tracing_of(**tracing: Any) -> TracingSettings:
    return read_settings(Config.from_dict({"backend": {"tracing": tracing}})).tracing


def test_off_by_default() -> None:
    assert read_settings(Config.from_dict({})).tracing == TracingSettings() == Settings().tracing
    assert TracingSettings().enabled is False


def test_every_key_is_read_and_strings_convert() -> None:
    got = tracing_of(
        enabled="true",
        serviceName="shop",
        exporter="otlp",
        otlp={"endpoint": "http://collector:4318/v1/traces", "headers": {"x-api-key": "k"}, "timeout": "5"},
        samplerRatio="0.25",
    )
    assert got == TracingSettings(
        enabled=True,
        service_name="shop",
        exporter="otlp",
        otlp=OtlpSettings(endpoint="http://collector:4318/v1/traces", headers={"x-api-key": "k"}, timeout=5.0),
        sampler_ratio=0.25,
    )


@pytest.mark.parametrize(
    ("tracing", "message"),
    [
        ({"exporter": "jaeger"}, "backend.tracing.exporter"),
        ({"samplerRatio": 1.5}, "backend.tracing.samplerRatio must be between 0 and 1"),
        ({"samplerRatio": -0.1}, "backend.tracing.samplerRatio must be between 0 and 1"),
        ({"exporter": "file"}, "backend.tracing.exporter 'file' needs backend.tracing.file"),
        ({"serviceName": ""}, "backend.tracing.serviceName must not be empty"),
        ({"sampler": 1}, "backend.tracing"),
    ],
)
def test_a_mistake_names_the_key(tracing: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        tracing_of(**tracing)


def test_on_without_the_otel_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "opentelemetry.instrumentation.aiohttp_client"
    monkeypatch.setattr(tracing_settings, "_importable", lambda name: name != missing)
    with pytest.raises(ConfigError, match=r"needs the otel extra \(pip install 'kernel\[otel\]'\); missing " + missing):
        tracing_of(enabled=True)
    assert tracing_of(enabled=False).enabled is False  # off, the extra is not needed


def test_the_extra_is_found_when_installed() -> None:
    assert all(tracing_settings._importable(name) for name in tracing_settings.OTEL_PACKAGES)
    assert not tracing_settings._importable("opentelemetry_no_such.package")
