"""Every Lua script names its KEYS and ARGV at the top, and its Python contract
(gateway.store.contracts) has the same fields, in the same order: a new argument on one side
alone fails here, not in production."""

from __future__ import annotations

import re
from dataclasses import fields
from importlib import resources
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.store.contracts import (
    CONTRACTS,
    AccountSlotArgs,
    AccountSlotOp,
    DeleteTeamArgs,
    ScriptArgs,
)
from gateway.store.contracts.base import is_key, is_rest
from gateway.store.scripts import libraries, script_text, uses

# local name = KEYS[1] | tonumber(ARGV[2]) | ARGV[3] == '1' | {unpack(ARGV, 4)}
_HEADER_LINE = re.compile(
    r"^local (?P<name>\w+) = (?:"
    r"\{unpack\((?P<rest>KEYS|ARGV), (?P<from>\d+)\)\}"
    r"|.*?\b(?P<table>KEYS|ARGV)\[(?P<index>\d+)\]"
    r")"
)


def _scripts() -> dict[str, str]:
    folder = resources.files("gateway.store")
    return {
        f.name.removesuffix(".lua"): f.read_text(encoding="utf-8")
        for f in folder.iterdir()
        if f.name.endswith(".lua")
    }


def header(text: str) -> tuple[list[tuple[str, str, bool]], int]:
    """The named inputs of a script, in order: (name, 'KEYS' or 'ARGV', trailing rest), and
    the number of the line after them. Fails on an index out of order."""
    declared: list[tuple[str, str, bool]] = []
    expected = {"KEYS": 1, "ARGV": 1}
    end = 0
    for number, line in enumerate(text.splitlines(), 1):
        m = _HEADER_LINE.match(line)
        if m is None:
            continue
        table = m["rest"] or m["table"]
        index = int(m["from"] or m["index"])
        assert index == expected[table], f"line {number}: {table}[{index}] out of order"
        expected[table] += 1
        declared.append((m["name"], table, m["rest"] is not None))
        end = number
    return declared, end


def contract_fields(contract: type[ScriptArgs[Any]]) -> list[tuple[str, str, bool]]:
    return [(f.name, "KEYS" if is_key(f) else "ARGV", is_rest(f)) for f in fields(contract)]


def test_every_script_file_has_a_contract_and_every_contract_a_file() -> None:
    registered = [c.script for c in CONTRACTS]
    assert len(registered) == len(set(registered)), "a script is registered twice"
    assert sorted(registered) == sorted(_scripts())


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.script)
def test_a_scripts_named_inputs_match_its_contract(contract: type[ScriptArgs[Any]]) -> None:
    declared, _ = header(_scripts()[contract.script])
    assert declared == contract_fields(contract)


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_no_script_reads_keys_or_argv_below_its_header(name: str) -> None:
    text = _scripts()[name]
    _, end = header(text)
    below = text.splitlines()[end:]
    offenders = [line for line in below if re.search(r"\b(KEYS|ARGV)\b", line)]
    assert offenders == []
    before = [
        line
        for line in text.splitlines()[:end]
        if re.search(r"\b(KEYS|ARGV)\b", line)
        and not line.lstrip().startswith("--")
        and not _HEADER_LINE.match(line)
    ]
    assert before == [], "KEYS/ARGV used inside the header other than to name them"


def test_an_argument_added_on_one_side_only_is_caught() -> None:
    """The check itself can fail: a script with one more ARGV than its contract differs."""
    admit = next(c for c in CONTRACTS if c.script == "admit")
    text = _scripts()["admit"]
    _, end = header(text)
    lines = text.splitlines()
    lines.insert(end, "local extra = ARGV[32]")
    declared, _ = header("\n".join(lines))
    assert declared != contract_fields(admit)
    assert declared[:-1] == contract_fields(admit)


def test_arguments_build_keys_and_argv_in_the_scripts_order() -> None:
    slot = AccountSlotArgs(
        account_running="k", op=AccountSlotOp.EXTEND, member="s|j", cap=3, seconds=1.5
    )
    assert slot.keys() == ["k"]
    assert slot.argv() == ["extend", "s|j", 3, 1.5]
    team = DeleteTeamArgs(team_record="t", team_keys="ks", key_records=("a", "b"), key_count=2)
    assert team.keys() == ["t", "ks", "a", "b"]
    assert team.argv() == [2]


# --- preludes: a script gets the libraries it declares, and only those -------------------------

_DEFINED = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)


def _library_texts() -> dict[str, str]:
    folder = resources.files("gateway.store").joinpath("lib")
    return {
        f.name.removesuffix(".lua"): f.read_text(encoding="utf-8")
        for f in folder.iterdir()
        if f.name.endswith(".lua")
    }


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def _definitions() -> dict[str, str]:
    """Every top-level name a library defines, and the library."""
    owners: dict[str, str] = {}
    for library, text in _library_texts().items():
        for name in _DEFINED.findall(text):
            assert name not in owners, f"{name} is defined by {owners[name]} and {library}"
            owners[name] = library
    return owners


def _needs(text: str, itself: str = "") -> set[str]:
    """The libraries whose names ``text`` uses."""
    words = set(re.findall(r"\b\w+\b", _code(text)))
    return {lib for name, lib in _definitions().items() if name in words and lib != itself}


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_a_script_declares_exactly_the_libraries_it_calls(name: str) -> None:
    text = _scripts()[name]
    assert set(uses(text)) == _needs(text)


@pytest.mark.parametrize("library", sorted(_library_texts()))
def test_a_library_declares_the_libraries_it_calls(library: str) -> None:
    text = _library_texts()[library]
    assert set(uses(text)) == _needs(text, itself=library)


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_a_scripts_prelude_holds_only_its_libraries(name: str) -> None:
    text = script_text(name)
    prelude = text[: len(text) - len(_scripts()[name])]
    defined = set(_DEFINED.findall(prelude)) - {"CLOCK_OFFSET"}
    owners = _definitions()
    assert {owners[d] for d in defined} == set(libraries(name))
    assert _needs(_scripts()[name]) <= set(libraries(name))


def test_the_clock_script_gets_only_the_clock_and_a_plain_one_gets_nothing() -> None:
    assert libraries("now") == ["clock"]
    assert script_text("reattach") == _scripts()["reattach"]
    assert libraries("authenticate") == ["clock", "keys"]  # dependencies first


async def test_every_script_compiles_in_redis(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        for contract in CONTRACTS:
            assert await redis.script_load(script_text(contract.script, clock_offset=1.5))
    finally:
        await redis.aclose()
