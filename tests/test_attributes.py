"""Argument capture: bounded, redacted, never calls __repr__, never raises."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from aiecs_tracing.core.attributes import (
    REDACTED,
    capture_arguments,
    is_secret_key,
    to_attribute_value,
)
from aiecs_tracing.core.config import DEFAULT_SECRET_KEYS as KEYS


class Explosive:
    def __repr__(self):
        raise AssertionError("__repr__ must not be called")

    __str__ = __repr__

    def __len__(self):
        raise AssertionError("len must not be called")


def test_scalars_json_and_objects():
    tags = capture_arguments((1, 2.5, True, "s", None, [1, {"a": 2}], Explosive()), {"d": {"k": [1, 2]}},
                             secret_keys=KEYS)
    assert tags["arg_0"] == 1 and tags["arg_1"] == 2.5 and tags["arg_2"] is True and tags["arg_3"] == "s"
    assert tags["arg_4"] == "None"
    assert json.loads(tags["arg_5"]) == [1, {"a": 2}]
    assert tags["arg_6"] == "<Explosive>"
    assert json.loads(tags["d"]) == {"k": [1, 2]}


def test_truncation_and_argument_limit():
    tags = capture_arguments(("x" * 5000,), {}, max_length=100)
    assert len(tags["arg_0"]) == 100 and tags["arg_0"].endswith("...")
    many = capture_arguments(tuple(range(100)), {}, max_args=32)
    assert sum(k.startswith("arg_") for k in many) == 32 and many["args.truncated"] is True


def test_nested_secrets_redacted():
    value = {"user": "u", "password": "p", "nested": {"api_key": "k", "Authorization": "Bearer x",
                                                      "list": [{"client_secret": "s"}]}}
    text = to_attribute_value(value, 10_000, KEYS)
    assert "Bearer" not in text and '"p"' not in text and '"k"' not in text and '"s"' not in text
    assert json.loads(text)["nested"]["api_key"] == REDACTED


def test_secret_key_matching():
    for key in ["password", "db_password", "accessToken", "X-Api-Key", "apikey", "session_id", "sessionid",
                "Cookie", "private_key", "AWS_SECRET_ACCESS_KEY", "refresh-token", "credentials"]:
        assert is_secret_key(key, KEYS), key
    for key in ["user", "max_tokens", "tokenizer", "session_count_total_x" * 0 + "username", "query"]:
        assert not is_secret_key(key, KEYS), key


def test_huge_ints_and_non_finite_floats():
    assert to_attribute_value(2**100) == str(2**100)
    assert json.loads(to_attribute_value([float("nan"), 2**70])) == ["nan", str(2**70)]


def test_deep_and_wide_structures_are_bounded():
    deep: list = []
    cur = deep
    for _ in range(1000):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    assert len(to_attribute_value(deep, 1024)) <= 1024
    wide = {str(i): i for i in range(100_000)}
    assert len(to_attribute_value(wide, 1024)) <= 1024


def test_cyclic_structure_does_not_recurse_forever():
    a: dict = {}
    a["self"] = a
    assert "self" in to_attribute_value(a, 1024)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    | st.tuples(children) | st.frozensets(st.integers(), max_size=3),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_like, max_size=5), st.dictionaries(st.text(min_size=1, max_size=15), json_like, max_size=5),
       st.integers(min_value=0, max_value=2000))
def test_capture_never_raises_and_stays_bounded(args, kwargs, limit):
    tags = capture_arguments(tuple(args), kwargs, max_length=limit, secret_keys=KEYS)
    for key, value in tags.items():
        assert isinstance(value, (str, bool, int, float)), (key, value)
        if isinstance(value, str) and limit >= len(REDACTED):
            assert len(value) <= limit
        if isinstance(value, int) and not isinstance(value, bool):
            assert -(2**63) <= value < 2**63
        if key in kwargs and is_secret_key(key, KEYS):
            assert value == REDACTED


def test_header_pairs_and_dsn_passwords_are_redacted():
    tags = capture_arguments(
        ("postgresql://admin:hunter2@db:5432/x", [("Authorization", "Bearer SECRET"), ("Accept", "json")]),
        {"dsn": "redis://:s3cret@cache:6379/0", "url": "https://example.com/a@b"},
        secret_keys=KEYS,
    )
    assert tags["arg_0"] == "postgresql://admin:[REDACTED]@db:5432/x"
    assert "SECRET" not in tags["arg_1"] and '"Accept","json"' in tags["arg_1"]
    assert tags["dsn"] == "redis://:[REDACTED]@cache:6379/0"
    assert tags["url"] == "https://example.com/a@b"  # no userinfo: untouched
    for key in ("auth", "pwd", "passphrase"):
        assert capture_arguments((), {key: "x"}, secret_keys=KEYS)[key] == REDACTED
