"""``kernel.openapi.validation``: requests checked against the document in the worker, before the handler.

Every refusal is a 400 ``InputError`` in the error shape naming the field, and the handler never ran
(``/stats`` counts the requests that reached one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess
from tests.conftest import TOKEN, assert_error_shape

AUTH = {"authorization": f"Bearer {TOKEN}"}
NOTES = "/api/documented/notes"


def _handled(client: httpx.Client) -> int:
    count: int = client.get("/api/documented/stats").json()["handled"]
    return count


def _refused(client: httpx.Client, method: str, url: str, **kwargs: Any) -> str:
    """The message of the 400 a request gets, checking the handler did not run."""
    before = _handled(client)
    headers = {**AUTH, **kwargs.pop("headers", {})}
    body = assert_error_shape(client.request(method, url, headers=headers, **kwargs), 400, "InputError")
    assert _handled(client) == before
    message: str = body["error"]["message"]  # type: ignore[index]
    return message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": ""}, 'body.title: "" is shorter than 1 character'),
        ({"title": "x" * 51}, "body.title: "),
        ({"tags": []}, 'body: "title" is a required property'),
        ({"title": 7}, 'body.title: 7 is not of type "string"'),
        ({"title": "t", "priority": 9}, "body.priority: 9 is greater than the maximum of 5"),
        ({"title": "t", "tags": ["a", 2]}, 'body.tags[1]: 2 is not of type "string"'),
        ([], 'body: [] is not of type "object"'),
    ],
)
def test_a_body_against_its_schema(client: httpx.Client, body: Any, message: str) -> None:
    assert _refused(client, "POST", NOTES, json=body).startswith(message)


def test_a_body_missing_of_another_type_or_not_json(client: httpx.Client) -> None:
    assert _refused(client, "POST", NOTES) == "a request body is required"
    text = {"content-type": "text/plain"}
    assert _refused(client, "POST", NOTES, content=b"title", headers=text) == (
        "the request body must be application/json, not text/plain"
    )
    broken = {"content-type": "application/json"}
    assert _refused(client, "POST", NOTES, content=b'{"title": ', headers=broken).startswith(
        "the request body is not valid JSON"
    )


def test_a_valid_body_reaches_the_handler_whole(client: httpx.Client) -> None:
    before = _handled(client)
    note = {"title": "ü" * 50, "tags": ["a", "b"], "priority": 5}
    created = client.post(NOTES, json=note, headers={**AUTH, "content-type": "application/json; charset=utf-8"})
    assert created.status_code == 201, created.text
    assert created.json() == {**note, "id": created.json()["id"]}
    assert _handled(client) == before + 1


def test_query_parameters_required_typed_and_repeated(client: httpx.Client) -> None:
    assert _refused(client, "GET", NOTES) == "query parameter 'limit' is required"
    assert _refused(client, "GET", NOTES + "?limit=ten") == 'query parameter \'limit\': "ten" is not of type "integer"'
    assert _refused(client, "GET", NOTES + "?limit=0") == "query parameter 'limit': 0 is less than the minimum of 1"
    assert _refused(client, "GET", NOTES + "?limit=5&done=maybe") == (
        'query parameter \'done\': "maybe" is not of type "boolean" or "null"'
    )
    listed = client.get(NOTES + "?limit=5&tag=a&tag=b&done=true&unknown=kept", headers=AUTH)
    assert listed.status_code == 200, listed.text
    assert (listed.json()["limit"], listed.json()["tags"]) == ("5", ["a", "b"])  # the handler sees the query as sent


def test_path_and_header_parameters_of_a_hand_written_operation(client: httpx.Client) -> None:
    trace = {"x-trace": "abcd"}
    assert _refused(client, "GET", "/api/documented/legacy/abc", headers=trace).startswith(
        "path parameter 'code': \"abc\" does not match"
    )
    assert _refused(client, "GET", "/api/documented/legacy/ABC") == "header parameter 'x-trace' is required"
    assert _refused(client, "GET", "/api/documented/legacy/ABC", headers={"x-trace": "ab"}).startswith(
        "header parameter 'x-trace': \"ab\" is shorter than 4 characters"
    )
    ok = client.get("/api/documented/legacy/ABC", headers={**AUTH, **trace})
    assert ok.json() == {"code": "ABC", "trace": "abcd"}


def test_requests_the_document_does_not_describe_go_to_the_router(client: httpx.Client) -> None:
    assert_error_shape(client.get("/api/documented/nowhere", headers=AUTH), 404, "NotFoundError")
    assert_error_shape(client.patch(NOTES, headers=AUTH), 405, "MethodNotAllowedError")
    assert_error_shape(client.get("/api/documented/notes/999", headers=AUTH), 404, "NotFoundError")


#: put first on the path of every process of the kernel: the validator cannot be imported
_NO_VALIDATOR = """
import sys


class _Absent:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "jsonschema_rs":
            raise ModuleNotFoundError(name)
        return None


sys.meta_path.insert(0, _Absent)
"""


def test_validation_without_the_extra_fails_where_the_plugin_is_declared(documented_site: Path, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(_NO_VALIDATOR))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(documented_site)])}
    declared = subprocess.run(
        [sys.executable, "-c", "import test_documented"], env=env, capture_output=True, text=True, timeout=60
    )
    assert declared.returncode == 1
    expected = (
        "OpenApi(validate=True) needs the request validator (jsonschema-rs): "
        "install the kernel's 'openapi' extra (pip install 'kernel[openapi]')"
    )
    assert expected in declared.stderr
    kernel = KernelProcess({}, paths=[tmp_path, documented_site])
    with pytest.raises(RuntimeError) as refused:
        kernel.start(timeout=30)
    kernel.stop()
    assert "plugin 'documented'" in str(refused.value) and expected in str(refused.value)
