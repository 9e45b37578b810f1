"""``kernel.openapi.index``: ``GET /.kernel/openapi/v1`` lists every plugin's document for the operator."""

from __future__ import annotations

import httpx

from kernel.testing import KernelProcess, start_test_backend
from kernel_services import discovery
from tests import plugins
from tests.conftest import TOKEN, assert_error_shape, base_config, fixture_plugin

AUTH = {"authorization": f"Bearer {TOKEN}"}
INDEX = "/.kernel/openapi/v1"


def test_the_index_needs_credentials_and_names_each_document(kernel: KernelProcess, client: httpx.Client) -> None:
    assert_error_shape(client.get(INDEX), 401, "AuthenticationError")
    assert_error_shape(client.get(INDEX, headers={"authorization": "Bearer nope"}), 401, "AuthenticationError")
    answer = client.get(INDEX, headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    entries = {e["id"]: e for e in answer.json()["plugins"]}
    assert entries["documented"] == {
        "id": "documented",
        "state": "ready",
        "url": f"{kernel.url}/api/documented/openapi.json",
    }
    assert "echo" not in entries  # no document
    for entry in entries.values():  # every listed document is served, open
        assert httpx.get(entry["url"], timeout=10).json()["openapi"] == "3.1.0"


async def test_the_urls_follow_the_base_url_and_the_mount() -> None:
    config = base_config(mount="/services")
    config["backend"]["baseUrl"] = "https://kernel.example.com"  # type: ignore[index]
    features = [fixture_plugin(plugins.DOCUMENTED)]
    # the kernel's own discovery (not the test backend's, pointing nowhere): the document's server URL is its
    async with start_test_backend(features, services=discovery.FACTORIES, config=config) as backend:
        index = await backend.client.get(INDEX, headers=AUTH)
        entries = {e["id"]: e["url"] for e in index.json()["plugins"]}
        assert entries["documented"] == "https://kernel.example.com/services/documented/openapi.json"
        served = (await backend.client.get("/services/documented/openapi.json")).json()
        assert served["servers"][0]["url"] == "https://kernel.example.com/services/documented"
