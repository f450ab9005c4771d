"""Request identity as a user sees it: the same request is one request, any real change is new."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.common.jsonutil import MAX_JSON_DEPTH, parse_json_object
from gateway.jobs.canonical import (
    _IDENTITY_VERSION,
    WEBHOOK_FIELDS,
    RequestIdentity,
    apply_defaults,
    canonical_json,
)
from tests import golden_identities

NANO = "google/nano-banana/pro/text-to-image"
NANO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "default": "A pair of mannequin legs"},
        "aspect_ratio": {"type": "string", "enum": ["21:9", "16:9", "1:1"], "default": "16:9"},
        "resolution": {"type": "string", "enum": ["1K", "2K", "4K"], "default": "1K"},
        "output_format": {"type": "string", "enum": ["jpeg", "png", "webp"], "default": "png"},
        "seed": {"type": "integer", "default": None},
    },
}
EXACT_INT_LIMIT = 2**53
# The tests' own secret; the golden identities (tests/golden/identities.json) are under it too.
request_identity = RequestIdentity(golden_identities.SECRET)

# Integers span what orjson parses as ints (it turns larger ones into floats).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
# Top-level bodies without webhook keys, so every key in them is meaningful.
bodies = st.dictionaries(
    st.text(max_size=6).filter(lambda key: key not in WEBHOOK_FIELDS), json_values, max_size=5
)
webhooks = st.fixed_dictionaries(
    {}, optional={"webhook": json_values, "webhook_intermediate_status": json_values}
)
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)


def identity(body: dict[str, Any], schema: dict[str, Any] | None = None) -> str:
    return request_identity("model", NANO, body, schema)


def transform(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``value`` with ``fn`` applied to every scalar, containers rebuilt around the results."""
    if isinstance(value, dict):
        return {key: transform(item, fn) for key, item in value.items()}
    if isinstance(value, list):
        return [transform(item, fn) for item in value]
    return fn(value)


def shuffled_keys(value: Any, rng: random.Random) -> Any:
    """An equal copy whose objects list their keys in a random order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled_keys(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled_keys(item, rng) for item in value]
    return value


def integral_floats_to_ints(leaf: Any) -> Any:
    if isinstance(leaf, float) and leaf.is_integer() and abs(leaf) <= EXACT_INT_LIMIT:
        return int(leaf)
    return leaf


def exact_ints_to_floats(leaf: Any) -> Any:
    if isinstance(leaf, int) and not isinstance(leaf, bool) and abs(leaf) <= EXACT_INT_LIMIT:
        return float(leaf)
    return leaf


Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """The path to every value inside ``value``, containers included, ``value`` itself excluded."""
    found: list[Path] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        found.append((*prefix, key))
        if isinstance(item, dict | list):
            found.extend(paths(item, (*prefix, key)))
    return found


def container_at(value: Any, path: Path) -> Any:
    for step in path:
        value = value[step]
    return value


def different_values(value: Any) -> list[Any]:
    """Values that mean something other than ``value``, differing by construction, not by oracle."""
    if value is None:
        return [0, False, "", [], {}]
    if isinstance(value, bool):
        return [not value, int(value), str(value).lower(), None]
    if isinstance(value, int):
        return [value + 1 if value < 2**64 - 1 else value - 1, str(value), None, [value]]
    if isinstance(value, float):
        other = math.nextafter(value, 0.0) if value != 0.0 else 0.5
        return [other, repr(value), None]
    if isinstance(value, str):
        variants = [value + "x", value.swapcase(), unicodedata.normalize("NFD", value), None]
        return [variant for variant in variants if variant != value]
    if isinstance(value, list):
        return [[*value, None], {}]
    return [{**value, "\x00added!": None}, []]


# --- equal requests are one request ------------------------------------------------------------


@PROPERTY_SETTINGS
@given(body=bodies, seed=st.integers(), extra=webhooks)
def test_same_request_written_differently_has_the_same_identity(
    body: dict[str, Any], seed: int, extra: dict[str, Any]
) -> None:
    expected = identity(body)
    rewritten = json.loads(json.dumps(shuffled_keys(body, random.Random(seed)), indent=3))
    spaced = json.loads(json.dumps(body, separators=(" ,\n ", " :\t"), ensure_ascii=False))
    assert identity(rewritten) == expected
    assert identity(spaced) == expected
    assert identity(transform(body, integral_floats_to_ints)) == expected
    assert identity(transform(body, exact_ints_to_floats)) == expected
    assert identity({**body, **extra}) == expected


@PROPERTY_SETTINGS
@given(value=json_values)
def test_canonical_json_is_a_fixed_point_of_parsing(value: Any) -> None:
    encoded = canonical_json(value)
    assert canonical_json(json.loads(encoded)) == encoded


def test_webhook_fields_never_change_the_identity() -> None:
    body = {"prompt": "x"}
    with_hooks = {
        **body,
        "webhook": "https://example.com/a",
        "webhook_intermediate_status": True,
    }
    assert identity(with_hooks) == identity(body)
    assert identity(with_hooks, NANO_SCHEMA) == identity(body, NANO_SCHEMA)
    webhook_default = {"properties": {"webhook": {"default": "https://example.com/default"}}}
    assert identity(body, webhook_default) == identity(body)


def test_nested_webhook_keys_are_part_of_the_input() -> None:
    assert identity({"options": {"webhook": "a"}}) != identity({"options": {"webhook": "b"}})


# --- any real change is a new request ----------------------------------------------------------


@PROPERTY_SETTINGS
@given(body=bodies.filter(bool), data=st.data())
def test_changing_any_value_gives_a_new_identity(body: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(paths(body)), label="path")
    changed = copy.deepcopy(body)
    parent = container_at(changed, path[:-1])
    parent[path[-1]] = data.draw(st.sampled_from(different_values(parent[path[-1]])))
    assert identity(changed) != identity(body)


@PROPERTY_SETTINGS
@given(body=bodies, data=st.data())
def test_adding_or_removing_a_key_gives_a_new_identity(
    body: dict[str, Any], data: st.DataObject
) -> None:
    objects = [(), *(path for path in paths(body) if isinstance(container_at(body, path), dict))]
    path = data.draw(st.sampled_from(objects), label="object")
    added = copy.deepcopy(body)
    target = container_at(added, path)
    key = data.draw(
        st.text(max_size=6).filter(lambda k: k not in target and k not in WEBHOOK_FIELDS)
    )
    target[key] = data.draw(json_values, label="value")
    assert identity(added) != identity(body)
    assert identity(body) != identity(added)
    if container_at(body, path):
        removed = copy.deepcopy(body)
        target = container_at(removed, path)
        del target[data.draw(st.sampled_from(sorted(target)), label="removed")]
        assert identity(removed) != identity(body)


@PROPERTY_SETTINGS
@given(body=bodies, items=st.lists(st.text(max_size=4), min_size=2, max_size=4, unique=True))
def test_reordering_an_array_gives_a_new_identity(body: dict[str, Any], items: list[str]) -> None:
    assert identity({**body, "images": items}) != identity({**body, "images": items[::-1]})


@PROPERTY_SETTINGS
@given(body=bodies, api=st.text(), target=st.text(), other=st.text())
def test_another_api_or_target_gives_a_new_identity(
    body: dict[str, Any], api: str, target: str, other: str
) -> None:
    assume(other not in (api, target))
    same = request_identity(api, target, body)
    assert request_identity(other, target, body) != same
    assert request_identity(api, other, body) != same


@pytest.mark.parametrize(
    ("api", "target", "other_api", "other_target"),
    [
        ("model", "a/b", "model/a", "b"),
        ("model", "ab", "mode", "lab"),
        ("serverless", "", "", "serverless"),
        ("model", "x\x00", "model\x00x", ""),
        ("model", "d", "modeld", ""),
    ],
)
def test_where_api_ends_and_target_begins_is_part_of_the_identity(
    api: str, target: str, other_api: str, other_target: str
) -> None:
    body = {"prompt": "x"}
    assert request_identity(api, target, body) != request_identity(other_api, other_target, body)


def test_a_target_cannot_be_confused_with_the_start_of_the_body() -> None:
    assert request_identity("model", "a", {"b": 1}) != request_identity("model", "a{", {"b": 1})


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("café", unicodedata.normalize("NFD", "café")),
        ("Prompt", "prompt"),
        ("ﬁ", "fi"),
        ("a ", "a"),
        ("\u212b", "\u00c5"),
    ],
    ids=["nfc-vs-nfd", "case", "compatibility-ligature", "trailing-space", "angstrom-sign"],
)
def test_strings_are_compared_exactly(one: str, other: str) -> None:
    assert one != other
    assert identity({"prompt": one}) != identity({"prompt": other})
    assert identity({one: "x"}) != identity({other: "x"})


def test_true_is_not_one_but_one_point_zero_is() -> None:
    assert identity({"n": 1}) != identity({"n": True})
    assert identity({"n": 0}) != identity({"n": False})
    assert identity({"n": [1, 0]}) != identity({"n": [True, False]})
    assert identity({"n": 1}) == identity({"n": 1.0})
    assert identity({"n": 0}) == identity({"n": -0.0})
    assert identity({"n": 1.5}) != identity({"n": 1})


def test_null_and_missing_differ_without_a_null_default() -> None:
    assert identity({"prompt": "x", "style": None}) != identity({"prompt": "x"})
    assert identity({"prompt": "x", "resolution": None}, NANO_SCHEMA) != identity(
        {"prompt": "x"}, NANO_SCHEMA
    )


# --- schema defaults ---------------------------------------------------------------------------


def test_spelling_out_the_defaults_is_the_same_request() -> None:
    bare = identity({"prompt": "x"}, NANO_SCHEMA)
    assert identity({"prompt": "x", "resolution": "1K"}, NANO_SCHEMA) == bare
    full = {"prompt": "x", "resolution": "1K", "aspect_ratio": "16:9", "output_format": "png"}
    assert identity(full, NANO_SCHEMA) == bare
    assert identity({"prompt": "x", "resolution": "2K"}, NANO_SCHEMA) != bare


def test_a_missing_prompt_is_the_default_prompt() -> None:
    default_prompt = {"prompt": "A pair of mannequin legs"}
    assert identity({}, NANO_SCHEMA) == identity(default_prompt, NANO_SCHEMA)


def test_a_null_default_is_the_same_as_absent_and_as_null() -> None:
    absent = identity({"prompt": "x"}, NANO_SCHEMA)
    assert identity({"prompt": "x", "seed": None}, NANO_SCHEMA) == absent
    assert identity({"prompt": "x", "seed": 0}, NANO_SCHEMA) != absent


def test_without_a_schema_defaults_are_not_guessed() -> None:
    assert identity({"prompt": "x"}) != identity({"prompt": "x", "resolution": "1K"})


@pytest.mark.parametrize(
    "schema",
    [
        None,
        {},
        {"type": "object"},
        {"properties": None},
        {"properties": ["resolution"]},
        {"properties": {"resolution": "1K"}},
        {"properties": {"resolution": {"type": "string"}}},
    ],
    ids=["none", "empty", "no-properties", "null-properties", "list", "bad-spec", "no-default"],
)
def test_a_schema_without_usable_defaults_leaves_the_body_as_sent(schema: Any) -> None:
    body = {"prompt": "x", "seed": None}
    result = apply_defaults(body, schema)
    assert result == body
    assert result is not body


def test_a_non_mapping_schema_leaves_the_body_as_sent() -> None:
    body = {"prompt": "x"}
    assert apply_defaults(body, ["not", "a", "schema"]) == body  # type: ignore[arg-type]


def test_applying_defaults_changes_neither_the_body_nor_the_schema() -> None:
    schema = {"properties": {"tags": {"default": ["a"]}, "seed": {"default": None}}}
    schema_before = copy.deepcopy(schema)
    body = {"prompt": "x", "seed": None}
    result = apply_defaults(body, schema)
    assert result == {"prompt": "x", "tags": ["a"]}
    assert body == {"prompt": "x", "seed": None}
    result["tags"].append("b")
    assert schema == schema_before


@PROPERTY_SETTINGS
@given(body=bodies)
def test_defaults_never_override_what_the_user_sent(body: dict[str, Any]) -> None:
    result = apply_defaults(body, NANO_SCHEMA)
    for key, value in body.items():
        if not (key == "seed" and value is None):
            assert result[key] == value


# --- the canonical encoding --------------------------------------------------------------------


def test_canonical_json_is_compact_sorted_utf8() -> None:
    value = {"b": [3, 1.5, None], "a": {"y": True, "x": "é\n"}}
    assert canonical_json(value) == '{"a":{"x":"é\\n","y":true},"b":[3,1.5,null]}'.encode()


def test_keys_sort_by_code_point_not_utf16() -> None:
    value = {"\U0001f600": 1, "\uffff": 2, "é": 3, "z": 4, "Z": 5, "": 6}
    expected = '{"":6,"Z":5,"z":4,"é":3,"\uffff":2,"\U0001f600":1}'
    assert canonical_json(value) == expected.encode()


@pytest.mark.parametrize(
    ("number", "encoded"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (float(2**53), b"9007199254740992"),
        (float(2**53 + 2), b"9007199254740994.0"),
        (0.1, b"0.1"),
        (1e300, b"1e+300"),
        (2**64 - 1, b"18446744073709551615"),
        (True, b"true"),
    ],
)
def test_each_number_has_one_form(number: float, encoded: bytes) -> None:
    assert canonical_json(number) == encoded


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(number: float) -> None:
    with pytest.raises(ValueError, match="not a JSON number"):
        canonical_json({"x": [number]})
    with pytest.raises(ValueError, match="not a JSON number"):
        identity({"x": number})


def test_values_json_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError):
        canonical_json({"x": {1, 2}})


def test_tuples_encode_as_arrays() -> None:
    assert canonical_json((1, "a")) == canonical_json([1, "a"])


def test_nesting_beyond_the_bound_is_refused_without_recursing_to_the_bottom() -> None:
    """Nested far past Python's recursion limit: a ValueError, never a RecursionError."""
    for depth in (MAX_JSON_DEPTH + 1, 5_000, 200_000):
        value: Any = 1
        for _ in range(depth):
            value = [value] if depth % 2 else {"k": value}
        with pytest.raises(ValueError, match="nested deeper"):
            request_identity("model", "m", {"x": value})
    value = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        value = [value]
    assert canonical_json({"x": value}).count(b"[") == MAX_JSON_DEPTH - 1


# --- the body RunComfy acts on, and a library-free encoding -------------------------------------


def parsed_identity(raw: str, schema: dict[str, Any] | None = None) -> str:
    """The identity of a body as the gateway reads it off the wire."""
    return identity(parse_json_object(raw.encode()), schema)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("18446744073709551616", "18446744073709551617"),
        ("-9223372036854775809", "-9223372036854775810"),
        ("123456789012345678901234567890", "123456789012345678901234567891"),
        ("1e20", "100000000000000000000"),
        ("18446744073709551616", "18446744073709551616.0"),
    ],
)
def test_integers_beyond_64_bits_are_different_requests(one: str, other: str) -> None:
    assert parsed_identity(f'{{"seed": {one}}}') != parsed_identity(f'{{"seed": {other}}}')
    assert parsed_identity(f'{{"seed": {one}}}') == parsed_identity(f'{{ "seed" : {one} }}')


def test_a_key_written_twice_is_the_request_with_its_last_value() -> None:
    """RunComfy's Python parser keeps the last value; the identity is of what it acts on."""
    twice = '{"prompt": "a cat", "seed": 1, "prompt": "a dog"}'
    assert parsed_identity(twice) == parsed_identity('{"seed": 1, "prompt": "a dog"}')
    assert parsed_identity(twice) != parsed_identity('{"seed": 1, "prompt": "a cat"}')
    big = '{"seed": 1, "seed": 18446744073709551617}'
    assert parse_json_object(big.encode()) == {"seed": 18446744073709551617}


def test_the_same_request_under_another_secret_has_another_identity() -> None:
    body = {"prompt": "a red fox"}
    other = RequestIdentity(b"another-gateway-secret-0123456789")
    assert other("model", NANO, body) != identity(body)
    unkeyed = hashlib.sha256(canonical_json(body)).hexdigest()
    assert identity(body) != unkeyed


def test_identities_match_the_golden_file() -> None:
    """Replicas on any library version name requests alike; a deliberate change of the rules
    bumps the identity version and rewrites the file (python -m tests.golden_identities)."""
    golden = golden_identities.load()
    assert golden["version"] == _IDENTITY_VERSION.decode(), (
        "the identity version changed: rewrite tests/golden/identities.json"
    )
    cases = golden["cases"]
    assert [(c["api"], c["target"], c["schema"], c["body"]) for c in cases] == list(
        golden_identities.BODIES
    ), "the golden bodies changed: rewrite tests/golden/identities.json"
    for case in cases:
        computed = golden_identities.identity_of(
            case["api"], case["target"], case["schema"], case["body"]
        )
        assert computed == case["identity"], (
            f"the identity of {case['body']} changed: bump _IDENTITY_VERSION in "
            "gateway/jobs/canonical.py and rewrite tests/golden/identities.json"
        )
    with_defaults = {c["identity"] for c in cases if c["schema"]}
    assert len(with_defaults) == 1  # defaults absent, spelt out or null: one request
    assert len({c["identity"] for c in cases}) == len(cases) - 2  # every other case differs


# --- the property: one request exactly when equal after the documented normalisations -----------

WIDE_INTS = st.integers() | st.integers(min_value=2**63, max_value=2**200).map(
    lambda n: n * (-1) ** (n % 2)
)
wire_scalars = (
    st.none()
    | st.booleans()
    | WIDE_INTS
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, 2.0**53, 2**53, 2**53 + 1, 1e20, 10**20])
    | st.text(max_size=6)
    | st.sampled_from(["", "1", "é", "e\u0301", "\x00", '"', "\\"])
)
wire_values = st.recursive(
    wire_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "é", "seed", ""]), children, max_size=3)
    ),
    max_leaves=8,
)
wire_bodies = st.dictionaries(
    st.sampled_from(["prompt", "resolution", "seed", "aspect_ratio", "x", "webhook"]),
    wire_values,
    max_size=4,
)


def meaning(value: Any) -> Any:
    """What a JSON value means to RunComfy, as a value Python compares with ``==`` exactly when
    two values mean the same, written from the documented rules alone."""
    if value is None or isinstance(value, bool):
        return ("literal", value)
    if isinstance(value, int):
        return ("number", value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= EXACT_INT_LIMIT:
            return ("number", int(value))
        return ("float", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(meaning(item) for item in value))
    return ("object", frozenset((key, meaning(item)) for key, item in value.items()))


def request_meaning(body: dict[str, Any]) -> Any:
    """A body's meaning after the documented request normalisations (schema defaults of
    NANO_SCHEMA, null for a null default, webhook fields)."""
    filled = dict(body)
    for name, spec in NANO_SCHEMA["properties"].items():
        if spec["default"] is None:
            if filled.get(name, 0) is None:
                del filled[name]
        else:
            filled.setdefault(name, spec["default"])
    return meaning({k: v for k, v in filled.items() if k not in WEBHOOK_FIELDS})


def on_the_wire(body: dict[str, Any], rng: random.Random) -> str:
    """``body`` as a client might write it: any key order, any whitespace, escapes or not."""
    return json.dumps(
        shuffled_keys(body, rng),
        ensure_ascii=rng.random() < 0.5,
        separators=rng.choice([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
    )


@settings(max_examples=300, deadline=None)
@given(one=wire_bodies, other=wire_bodies, seed=st.integers())
def test_two_bodies_are_one_request_exactly_when_they_mean_the_same(
    one: dict[str, Any], other: dict[str, Any], seed: int
) -> None:
    rng = random.Random(seed)
    same_meaning = request_meaning(one) == request_meaning(other)
    same_identity = parsed_identity(on_the_wire(one, rng), NANO_SCHEMA) == parsed_identity(
        on_the_wire(other, rng), NANO_SCHEMA
    )
    assert same_identity == same_meaning


@settings(max_examples=300, deadline=None)
@given(body=wire_bodies, seed=st.integers(), data=st.data())
def test_a_body_rewritten_or_changed_in_one_place_is_one_request_exactly_when_it_means_the_same(
    body: dict[str, Any], seed: int, data: st.DataObject
) -> None:
    """Pairs drawn independently rarely mean the same; these are near misses and rewrites."""
    rng = random.Random(seed)
    rewrite = integral_floats_to_ints if rng.random() < 0.5 else exact_ints_to_floats
    rewritten = transform(body, rewrite)
    candidates: list[Any] = [rewritten]
    found = paths(body)
    if found:
        where = data.draw(st.sampled_from(found))
        container = copy.deepcopy(body)
        parent = container_at(container, where[:-1])
        parent[where[-1]] = data.draw(wire_scalars)
        candidates.append(container)
    for other in candidates:
        same_meaning = request_meaning(body) == request_meaning(other)
        same_identity = parsed_identity(on_the_wire(body, rng), NANO_SCHEMA) == parsed_identity(
            on_the_wire(other, rng), NANO_SCHEMA
        )
        assert same_identity == same_meaning, (body, other)
