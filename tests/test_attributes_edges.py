"""attributes.py at its edges: odd keys and scalars, the "N more" line, user tags.

Written against the mutants ``make mutate`` left alive; each pins what a span's tag
reads (and so what goes on the wire) for an input a host application really passes.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterator, Mapping

from aiecs_tracing.core.attributes import (
    MAX_DEPTH,
    MAX_ITEMS,
    REDACTED,
    attribute_for,
    capture_arguments,
    sanitize_tags,
    to_attribute_value,
)


class Colour(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 7


class Metres(float):
    pass


class LenFails(list):
    """A list whose ``len()`` raises (a lazy proxy, say): iteration still works."""

    def __len__(self) -> int:
        raise RuntimeError("len() not available")


def test_enum_and_subclass_values_are_recorded_as_their_plain_values():
    data = json.loads(to_attribute_value({"colour": Colour.RED, "level": Level.HIGH, "height": Metres(1.5)}))
    assert data == {"colour": "red", "level": 7, "height": 1.5}
    assert [type(v) for v in data.values()] == [str, int, float]


def test_mapping_keys_of_every_scalar_kind_are_written_as_their_text():
    value = {True: "t", 2: "i", 1.5: "f", None: "n", (1, 2): "tuple", Level.HIGH: "enum", Colour.RED: "str-enum"}
    assert json.loads(to_attribute_value(value)) == {
        "True": "t",
        "2": "i",
        "1.5": "f",
        "None": "n",
        "<tuple>": "tuple",
        "7": "enum",
        "red": "str-enum",
    }


def test_long_containers_say_how_many_items_were_left_out():
    extra = 10
    as_list = json.loads(to_attribute_value(list(range(MAX_ITEMS + extra)), 10_000))
    assert as_list[-1] == f"... {extra} more" and len(as_list) == MAX_ITEMS + 1
    as_dict = json.loads(to_attribute_value({f"k{i}": i for i in range(MAX_ITEMS + extra)}, 10_000))
    assert as_dict["..."] == f"{extra} more" and len(as_dict) == MAX_ITEMS + 1
    unknown_length = json.loads(to_attribute_value(LenFails(range(MAX_ITEMS + extra)), 10_000))
    assert unknown_length[-1] == "... more"  # no count to give, and no exception


def test_user_tags_none_dropped_values_converted_and_truncated_custom_secrets_redacted():
    secret_keys = ("mykey",)
    tags = sanitize_tags(
        {"skipped": None, "mykey": "x", "note": "mykey=hunter2", "list": ["x" * 100], "nested": {"mykey": 1},
         "count": 3, "big": 2**70, "ratio": 0.5, "flag": False, "after": "kept"},
        20,
        secret_keys,
    )
    assert tags == {
        "mykey": REDACTED,
        "note": f"mykey={REDACTED}",
        "list": '["' + "x" * 15 + "...",
        "nested": '{"mykey":"[REDACT...',
        "count": 3,
        "big": str(2**70)[:17] + "...",
        "ratio": 0.5,
        "flag": False,
        "after": "kept",
    }


def test_a_plain_string_tag_is_kept_whole_only_scrubbed():
    long_text = "y" * 5000
    assert attribute_for("message", long_text, 100) == long_text
    assert attribute_for("message", "token=abc " + long_text, 100) == f"token={REDACTED} " + long_text


def test_a_container_too_deep_or_too_odd_is_named_with_its_length_or_a_question_mark():
    deep: object = LenFails([1])
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert "<LenFails len=?>" in to_attribute_value(deep)
    released = memoryview(b"secret")
    released.release()
    assert to_attribute_value({"blob": released, "data": b"abc"}) == '{"blob":"<memoryview len=?>","data":"<bytes len=3>"}'


def test_capture_defaults_and_skipping_self():
    tags = capture_arguments(tuple(range(40)), {"late": 1})
    assert [tags[f"arg_{i}"] for i in range(32)] == list(range(32))
    assert "arg_32" not in tags and "late" not in tags and tags["args.truncated"] is True
    assert capture_arguments(("z" * 2000,), {})["arg_0"] == "z" * 1021 + "..."
    method = capture_arguments(("self", "a", "b"), {"k": "v"}, skip_first=True, positional_names=("self", "x", "y"))
    assert method == {"arg_0": "a", "arg_1": "b", "k": "v"}
    assert capture_arguments((), {"k": 1}, skip_first=True) == {"k": 1}  # nothing to skip


class Text(str):
    pass


class Unreadable(Mapping):
    """A mapping that fails when read (a broken proxy): captured by its type name only."""

    def __getitem__(self, key: str) -> int:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")

    def __len__(self) -> int:
        return 1


def test_nesting_is_cut_at_max_depth_naming_the_container_and_its_length():
    assert MAX_DEPTH == 4
    nested_dicts = {"a": {"b": {"c": {"d": {"e": 1, "f": 2}}}}}
    assert to_attribute_value(nested_dicts) == '{"a":{"b":{"c":{"d":"<dict len=2>"}}}}'
    nested_lists = [[[[[1, 2, 3]]]]]
    assert to_attribute_value(nested_lists) == '[[[["<list len=3>"]]]]'
    assert to_attribute_value([{"k": [[(1,)]]}]) == '[{"k":[["<tuple len=1>"]]}]'


def test_scalars_at_the_top_and_nested_keep_their_json_types():
    assert to_attribute_value({"none": None, "yes": True, "no": False}) == '{"none":null,"yes":true,"no":false}'
    low, high = -(2**63), 2**63 - 1
    assert to_attribute_value([low, high, high + 1]) == f'[{low},{high},"{high + 1}"]'
    assert (to_attribute_value(low), to_attribute_value(high), to_attribute_value(high + 1)) == (low, high, str(high + 1))
    nan = to_attribute_value(float("nan"))
    assert isinstance(nan, float) and math.isnan(nan)
    assert to_attribute_value(True) is True
    level = to_attribute_value(Level.HIGH)
    assert level == 7 and type(level) is int
    assert to_attribute_value(None) == "None"
    assert to_attribute_value({"name": "José"}) == '{"name":"José"}'  # not \\u00e9 escapes


def test_every_value_is_truncated_to_max_length_and_at_most_that():
    assert to_attribute_value("x" * 2000) == "x" * 1021 + "..."  # the default 1024
    assert to_attribute_value("x" * 10, 10) == "x" * 10
    assert to_attribute_value("abcdef", 2) == "..."
    assert to_attribute_value(None, 3) == "..."
    assert to_attribute_value(Text("y" * 50), 10) == "yyyyyyy..."
    assert to_attribute_value(Unreadable()) == "<Unreadable>"


def test_custom_secret_keys_reach_nested_strings_header_pairs_and_keywords():
    keys = ("mykey",)
    assert to_attribute_value({"note": "mykey=abc", "other": Text("mykey=def")}, 200, keys) == (
        '{"note":"mykey=[REDACTED]","other":"mykey=[REDACTED]"}'
    )
    headers = [("Authorization", "Bearer abc"), ("Accept", "json"), ("mykey", "v", "extra")]
    assert json.loads(to_attribute_value(headers, 500, ("authorization", "mykey"))) == [
        ["Authorization", REDACTED],
        ["Accept", "json"],
        ["mykey", REDACTED, REDACTED],
    ]
    tags = capture_arguments((), {"mykey": "s", "nested": {"mykey": 1}, "plain": "mykey=2"}, secret_keys=keys)
    assert tags == {"mykey": REDACTED, "nested": '{"mykey":"[REDACTED]"}', "plain": "mykey=[REDACTED]"}


def test_keyword_arguments_count_towards_max_args_and_reserved_names_are_prefixed():
    tags = capture_arguments((), {f"k{i}": i for i in range(40)}, max_args=32)
    assert len(tags) == 33 and tags["args.truncated"] is True and "k31" in tags and "k32" not in tags
    mixed = capture_arguments(tuple(range(30)), {f"k{i}": i for i in range(5)})
    assert ("k1" in mixed, "k2" in mixed, mixed["args.truncated"]) == (True, False, True)
    assert capture_arguments((), {"error": 1, "component": "x", "mine": 2}) == {
        "kwarg_error": 1,
        "kwarg_component": "x",
        "mine": 2,
    }
    assert capture_arguments((1,), {"k": 1}, max_args=2) == {"arg_0": 1, "k": 1}  # exactly max_args: not truncated


def test_arguments_that_cannot_be_read_are_flagged_not_raised():
    class BadArgs(tuple):
        def __len__(self) -> int:
            raise RuntimeError("no len")

    assert capture_arguments(BadArgs((1,)), {}) == {"args.capture_failed": True}
