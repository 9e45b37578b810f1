"""``kernel.openapi.document``: a plugin's document, built from its declaration and routes, served by its worker."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31  # the official OpenAPI 3.1 schema

from kernel.openapi_spec import ERROR_SCHEMA
from kernel.testing import KernelProcess, wait_for
from tests.conftest import TOKEN, assert_error_shape

AUTH = {"authorization": f"Bearer {TOKEN}"}
OPEN = [{}, {"bearerAuth": []}]
BEARER = [{"bearerAuth": []}]


def _document(client: httpx.Client, plugin_id: str = "documented") -> dict[str, Any]:
    answer = client.get(f"/api/{plugin_id}/openapi.json")  # no credentials: the document is open
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    document: dict[str, Any] = answer.json()
    return document


def test_the_document_is_open_and_names_the_plugins_base_url(kernel: KernelProcess, client: httpx.Client) -> None:
    doc = _document(client)
    jsonschema_rs.validator_for(OPENAPI_31).validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {"title": "documented", "version": "2.0.0"}  # the hand-written part's own
    assert doc["servers"] == [{"url": f"{kernel.url}/api/documented", "description": "this plugin's base URL"}]
    assert "/openapi.json" not in doc["paths"]


def test_typed_routes_become_operations_with_their_schemas(client: httpx.Client) -> None:
    doc = _document(client)
    schemas = doc["components"]["schemas"]
    post = doc["paths"]["/notes"]["post"]
    assert post["summary"] == "Add a note"
    assert post["requestBody"] == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewNote"}}},
    }
    assert post["responses"]["201"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Note"}}
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/KernelError"}}}
    assert post["responses"]["default"]["content"] == error
    assert schemas["KernelError"] == ERROR_SCHEMA
    assert schemas["NewNote"]["required"] == ["title"]
    assert schemas["NewNote"]["properties"]["title"] == {"type": "string", "minLength": 1, "maxLength": 50}
    query = {p["name"]: p for p in doc["paths"]["/notes"]["get"]["parameters"]}
    assert query["limit"] == {
        "name": "limit",
        "in": "query",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
    }
    assert (query["tag"]["required"], query["tag"]["schema"]["type"]) == (False, "array")
    assert doc["paths"]["/notes"]["get"]["tags"] == ["notes"]
    one = doc["paths"]["/notes/{id}"]["get"]  # {id:int}: an integer path parameter
    assert one["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
    ]
    assert one["responses"]["404"] == {"description": "No such note", "content": error}


def test_hand_written_operations_stay_and_undescribed_routes_are_listed(client: httpx.Client) -> None:
    doc = _document(client)
    legacy = doc["paths"]["/legacy/{code}"]["get"]
    assert legacy["summary"] == "Written by hand"  # not the route's Operation
    assert [p["name"] for p in legacy["parameters"]] == ["code", "x-trace"]
    stats = doc["paths"]["/stats"]["get"]
    assert stats["responses"]["2XX"] == {"description": "Success (not described)"}
    # the routes of the services every plugin has: its public keys, the user cookie
    assert doc["paths"]["/.backstage/auth/v1/jwks.json"]["get"]["responses"]["200"]["content"]
    assert set(doc["paths"]["/.backstage/auth/v1/cookie"]) == {"get", "delete"}
    assert "204" in doc["paths"]["/.backstage/auth/v1/cookie"]["delete"]["responses"]


def test_security_follows_the_auth_policies_as_they_change(client: httpx.Client) -> None:
    doc = _document(client)
    assert doc["security"] == BEARER
    assert doc["paths"]["/notes"]["post"]["security"] == BEARER
    assert doc["paths"]["/stats"]["get"]["security"] == OPEN
    assert doc["paths"]["/.backstage/auth/v1/jwks.json"]["get"]["security"] == OPEN
    cookie = doc["paths"]["/.backstage/auth/v1/cookie"]["get"]["security"]
    assert cookie == [{"bearerAuth": []}, {"userCookie": []}]
    assert doc["components"]["securitySchemes"]["userCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "backstage-auth",
        "description": "A user's limited token",
    }
    assert doc["paths"]["/later/ping"]["get"]["security"] == BEARER
    assert client.post("/api/documented/open-later", headers=AUTH).status_code == 200
    # the policy reaches the gateway within a moment; the document says so at once, retitled by set_openapi
    changed = _document(client)
    assert changed["paths"]["/later/ping"]["get"]["security"] == OPEN
    assert changed["info"] == {"title": "documented, retitled", "version": "3.0.0"}
    wait_for(lambda: client.get("/api/documented/later/ping").status_code == 200)


def test_a_plugin_without_a_document_has_no_openapi_path(client: httpx.Client) -> None:
    assert_error_shape(client.get("/api/echo/openapi.json"), 401, "AuthenticationError")  # not opened
    assert_error_shape(client.get("/api/echo/openapi.json", headers=AUTH), 404, "NotFoundError")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/documented/openapi.json", {"GET", "HEAD"}),
        # two routes of one path (each method its own operation): one Allow for both (RFC 9110)
        ("/api/documented/.backstage/auth/v1/cookie", {"GET", "HEAD", "DELETE"}),
        ("/api/documented/notes", {"GET", "HEAD", "POST"}),
    ],
)
def test_another_method_is_a_405_that_names_every_allowed_one(
    client: httpx.Client, path: str, allowed: set[str]
) -> None:
    answer = client.request("PATCH", path, headers=AUTH)
    assert_error_shape(answer, 405, "MethodNotAllowedError")
    assert set(answer.headers["allow"].split(", ")) == allowed
