"""Properties, checked on many generated inputs (hypothesis): the wire codec and the config's merge and
substitution.

- every protocol message round-trips through the codec; random or truncated bytes never crash the
  decoder: they are a ``ProtocolError`` or a message, nothing else;
- ``merge`` deep-merges objects and lets the later value win anywhere else; merging with ``{}`` or with
  itself changes nothing (it is not associative: a scalar in the middle cuts a deep merge, by design);
- ``${VAR}`` substitution: a set variable is its value, ``${VAR:-d}`` falls back only when unset or
  empty, ``$${...}`` stays literal, and a string without ``${`` is left as it is.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel import protocol as p
from kernel.config.directives import ABSENT, Context, transform
from kernel.errors import ConfigError, ProtocolError
from kernel.settings import merge

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(max_size=40)
ints = st.integers(min_value=0, max_value=2**31)
header_lists = st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=5)
principals = st.builds(
    p.Principal,
    type=st.sampled_from(["none", "user", "service"]),
    subject=text,
    access_restrictions=st.none() | st.lists(text, max_size=3),
    ownership_refs=st.lists(text, max_size=3),
    actor=text,
)
policies = st.lists(st.builds(p.AuthPolicy, path=text, allow=st.sampled_from(["unauthenticated", "user-cookie"])))
messages = st.one_of(
    st.builds(p.Hello, version=ints, role=st.sampled_from(["worker", "gateway", "supervisor"]), plugin_id=text,
              worker_id=text, pid=ints, policies=policies),
    st.builds(p.RequestHead, stream=ints, method=text, path=text, query=st.binary(max_size=30), headers=header_lists,
              client=st.none() | st.tuples(text, ints), scheme=text, principal=principals,
              body=st.binary(max_size=100), more_body=st.booleans(), root_path=text, http_version=text,
              websocket=st.booleans()),
    st.builds(p.RequestBody, stream=ints, more=st.booleans()),
    st.builds(p.ResponseHead, stream=ints, status=st.integers(100, 599), headers=header_lists,
              body=st.binary(max_size=100), more_body=st.booleans()),
    st.builds(p.ResponseBody, stream=ints, more=st.booleans()),
    st.builds(p.End, stream=ints),
    st.builds(p.Error, stream=ints, name=text, message=text, stack=text),
    st.builds(p.Credit, stream=ints, chunks=ints),
    st.builds(p.Heartbeat, sent_at=st.floats(allow_nan=False), ready=st.booleans(), reason=text, served=ints),
    st.builds(p.Shutdown, grace=st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(p.ConfigUpdate, snapshot=st.binary(max_size=100)),
    st.builds(p.Policies, policies=policies),
    st.builds(p.TableApplied, generation=ints),
    st.builds(p.WsAccept, stream=ints, subprotocol=st.none() | text, headers=header_lists),
    st.builds(p.WsMessage, stream=ints, text=st.booleans()),
    st.builds(p.WsClose, stream=ints, code=st.integers(1000, 4999), reason=text),
)  # fmt: skip


@SETTINGS
@given(messages)
def test_every_message_round_trips(msg: p.Message) -> None:
    assert p.decode(p.encode(msg)) == msg


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_are_a_protocol_error_or_a_message(frame: bytes) -> None:
    try:
        assert isinstance(p.decode(frame), msgspec.Struct)
    except ProtocolError:
        pass


@SETTINGS
@given(messages, st.data())
def test_a_truncated_or_flipped_frame_never_crashes_the_decoder(msg: p.Message, data: st.DataObject) -> None:
    frame = bytearray(p.encode(msg))
    cut = data.draw(st.integers(0, len(frame)))
    if data.draw(st.booleans()) and frame:
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] ^= data.draw(st.integers(1, 255))
    try:
        p.decode(bytes(frame[:cut]))
    except ProtocolError:
        pass


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=15,
)
objects = st.dictionaries(st.text(max_size=4), json_values, max_size=5)


@SETTINGS
@given(objects)
def test_merging_with_nothing_changes_nothing(a: dict[str, Any]) -> None:
    assert merge(a, {}) == a
    assert merge({}, a) == a


@SETTINGS
@given(objects, objects)
def test_the_later_value_wins_and_objects_merge_deeply(a: dict[str, Any], b: dict[str, Any]) -> None:
    merged = merge(a, b)
    assert set(merged) == set(a) | set(b)
    for key, value in merged.items():
        if key not in b:
            assert value == a[key]
        elif isinstance(a.get(key), dict) and isinstance(b[key], dict):
            assert value == merge(a[key], b[key])
        else:
            assert value == b[key]


@SETTINGS
@given(objects)
def test_merging_a_config_with_itself_changes_nothing(a: dict[str, Any]) -> None:
    assert merge(a, a) == a


names = st.text(alphabet=string.ascii_uppercase + "_", min_size=1, max_size=8)
plain = st.text(alphabet=st.characters(blacklist_characters="${}"), max_size=20)


def _sub(value: str, env: dict[str, str]) -> Any:
    return transform(value, "some.key", Context(Path("app-config.yaml"), "app-config.yaml", env, ()))


@SETTINGS
@given(plain)
def test_a_string_without_substitution_is_left_as_it_is(value: str) -> None:
    assert _sub(value, {}) == value


@SETTINGS
@given(names, plain, plain, plain)
def test_a_set_variable_is_its_value(name: str, value: str, before: str, after: str) -> None:
    env = {name: value}
    assert _sub(f"${{{name}}}", env) == value
    assert _sub(f"{before}${{{name}}}{after}", env) == f"{before}{value}{after}"


@SETTINGS
@given(names, plain, st.sampled_from([None, ""]))
def test_the_default_applies_when_unset_or_empty(name: str, default: str, value: str | None) -> None:
    env = {} if value is None else {name: value}
    assert _sub(f"${{{name}:-{default}}}", env) == default


@SETTINGS
@given(names, plain)
def test_an_escaped_substitution_stays_literal(name: str, before: str) -> None:
    assert _sub(f"{before}$${{{name}}}", {}) == f"{before}${{{name}}}"


@SETTINGS
@given(names, plain)
def test_an_unset_variable_inside_text_is_an_error_naming_it(name: str, before: str) -> None:
    value = f"{before}x${{{name}}}"
    try:
        result = _sub(value, {})
    except ConfigError as exc:
        assert name in str(exc) and "some.key" in str(exc)
    else:
        raise AssertionError(f"{value!r} gave {result!r}")
    assert _sub(f"${{{name}}}", {}) is ABSENT  # alone, an unset variable makes the key vanish
