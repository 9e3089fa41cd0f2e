"""attributes.py at its edges: odd keys and scalars, the "N more" line, user tags.

Written against the mutants ``make mutate`` left alive; each pins what a span's tag
reads (and so what goes on the wire) for an input a host application really passes.
"""

from __future__ import annotations

import enum
import json

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
