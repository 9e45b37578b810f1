"""kernel_services.discovery: internal and external base URLs from config, overrides, prefixes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kernel.config import Config, ConfigError, ReloadingConfig
from kernel_services.discovery import FACTORIES, HostDiscovery, _LiveDiscovery, read_discovery_endpoints


def discovery(data: dict[str, Any]) -> HostDiscovery:
    return HostDiscovery.from_config(Config.from_dict(data))


async def urls(d: HostDiscovery | _LiveDiscovery, plugin_id: str) -> tuple[str, str]:
    return await d.get_base_url(plugin_id), await d.get_external_base_url(plugin_id)


async def test_defaults() -> None:
    assert await urls(discovery({}), "catalog") == (
        "http://127.0.0.1:7007/api/catalog",
        "http://127.0.0.1:7007/api/catalog",
    )


async def test_listen_address_base_url_and_mount() -> None:
    d = discovery(
        {
            "backend": {
                "baseUrl": "https://backstage.example.com/",
                "listen": {"host": "10.1.2.3", "port": "7100"},
                "gateway": {"mount": "/services/api/"},
            }
        }
    )
    assert await urls(d, "catalog") == (
        "http://10.1.2.3:7100/services/api/catalog",
        "https://backstage.example.com/services/api/catalog",
    )


async def test_base_url_with_a_path_prefix() -> None:
    d = discovery({"backend": {"baseUrl": "https://example.com/portal//"}})
    assert await d.get_external_base_url("search") == "https://example.com/portal/api/search"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("::", "localhost"),
        ("", "localhost"),
        ("::1", "[::1]"),
        ("myhost", "myhost"),
    ],
)
async def test_listen_host(host: str, expected: str) -> None:
    d = discovery({"backend": {"listen": {"host": host, "port": 8000}}})
    assert await d.get_base_url("x") == f"http://{expected}:8000/api/x"


@pytest.mark.parametrize("mount", ["", "/"])
async def test_root_mount(mount: str) -> None:
    d = discovery({"backend": {"baseUrl": "http://h", "gateway": {"mount": mount}}})
    assert await d.get_external_base_url("x") == "http://h/x"


async def test_endpoint_overrides() -> None:
    d = discovery(
        {
            "backend": {"baseUrl": "https://public.example.com"},
            "discovery": {
                "endpoints": [
                    {
                        "target": "http://catalog-svc:7007/api/{{ pluginId }}/",
                        "plugins": ["catalog", "search"],
                    },
                    {"target": {"internal": "http://internal-only/{{pluginId}}"}, "plugins": ["scaffolder"]},
                    {
                        "target": {"internal": "http://in/techdocs", "external": "https://out/techdocs/"},
                        "plugins": ["techdocs"],
                    },
                    {"target": "http://never-used", "plugins": ["catalog"]},
                ]
            },
        }
    )
    assert await urls(d, "catalog") == ("http://catalog-svc:7007/api/catalog",) * 2
    assert await urls(d, "search") == ("http://catalog-svc:7007/api/search",) * 2
    assert await urls(d, "scaffolder") == (
        "http://internal-only/scaffolder",
        "https://public.example.com/api/scaffolder",  # a missing side keeps the default
    )
    assert await urls(d, "techdocs") == ("http://in/techdocs", "https://out/techdocs")
    assert await urls(d, "other") == (
        "http://127.0.0.1:7007/api/other",
        "https://public.example.com/api/other",
    )


@pytest.mark.parametrize(
    "endpoints",
    [
        [{"target": "http://x"}],  # no plugins
        [{"target": 5, "plugins": ["a"]}],
        [{"target": {"internal": "http://x", "bogus": 1}, "plugins": ["a"]}],
        {"not": "a list"},
    ],
)
def test_bad_endpoints_are_config_errors_naming_the_key(endpoints: Any) -> None:
    with pytest.raises(ConfigError, match="discovery.endpoints"):
        read_discovery_endpoints(Config.from_dict({"discovery": {"endpoints": endpoints}}))


async def test_the_factory_follows_config_reloads(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("backend:\n  baseUrl: http://one\n")
    config = ReloadingConfig([path], env={})
    [factory] = FACTORIES
    assert factory.service.id == "core.discovery" and factory.service.scope == "plugin"
    assert [ref.id for ref in factory.deps.values()] == ["core.rootConfig"]
    d = await factory.create(config=config)
    assert await d.get_external_base_url("x") == "http://one/api/x"
    path.write_text("backend:\n  baseUrl: http://two\n")
    assert await config.reload()
    assert await d.get_external_base_url("x") == "http://two/api/x"
    path.write_text("backend:\n  baseUrl: http://three\ndiscovery: {endpoints: [{target: 1}]}\n")
    assert await config.reload()
    assert await d.get_external_base_url("x") == "http://two/api/x"  # a broken reload keeps the last good one


async def test_the_factory_accepts_a_plain_config() -> None:
    d = await FACTORIES[0].create(config=Config.from_dict({"backend": {"listen": {"port": 9}}}))
    assert await d.get_base_url("x") == "http://127.0.0.1:9/api/x"
