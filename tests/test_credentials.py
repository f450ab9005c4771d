"""Parsing what callers present: team keys, admin tokens and request ids, fuzzed.

Each parser is compared with a character-by-character reference, so anything a regex lets
through by accident (a trailing newline before ``$``, a Unicode digit for ``\\d``) shows up.
"""

from __future__ import annotations

import hashlib
import hmac
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.access.audit import ENTRY_ID_RE, parse_entry_id
from gateway.access.credentials import (
    ADMIN_TOKEN_ID_RE,
    AdminCredential,
    AdminTokenCredential,
    InvalidCredential,
    KeyCredential,
    new_admin_token,
    new_key,
    parse_bearer,
    split_key_id,
)
from gateway.access.teams import TEAM_ID_RE
from gateway.jobs.records import REQUEST_ID_RE
from gateway.web.routes.shared import DEPLOYMENT_ID_RE

ID_CHARS = string.ascii_lowercase + string.digits
SECRET_CHARS = string.ascii_letters + string.digits
REQUEST_ID_CHARS = string.ascii_letters + string.digits + "_-"
ADMIN = "bootstrap-admin-token-123"

# Characters a regex is most likely to mishandle, mixed with plain ones.
tricky = st.sampled_from(
    list("\n\r\t \x00_-./:%+=é٣Ａ\u200b") + list(string.ascii_letters + string.digits)
)


def _spelled(token: str, prefix: str, id_len: int) -> bool:
    """``prefix``, ``id_len`` id characters, ``_``, 40 secret characters, spelled out."""
    end = len(prefix) + id_len
    return (
        len(token) == end + 41
        and token.startswith(prefix)
        and all(c in ID_CHARS for c in token[len(prefix) : end])
        and token[end] == "_"
        and all(c in SECRET_CHARS for c in token[end + 1 :])
    )


def is_key(token: str) -> bool:
    """The key format: ``rcg_`` 16 id characters ``_`` 40 secret characters."""
    return _spelled(token, "rcg_", 16)


def is_admin_token(token: str) -> bool:
    """The admin token format: ``rca_`` 12 id characters ``_`` 40 secret characters."""
    return _spelled(token, "rca_", 12)


slots = st.text(ID_CHARS, min_size=8, max_size=8)
keys = st.builds(lambda slot: new_key(slot)[0], slots)
admin_tokens = st.builds(lambda _: new_admin_token()[0], st.none())


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """A valid credential with one character changed, inserted, removed or appended."""
    token = draw(base)
    at = draw(st.integers(0, len(token)))
    char = draw(tricky)
    how = draw(st.sampled_from(["replace", "insert", "delete", "append"]))
    if how == "replace" and at < len(token):
        return token[:at] + char + token[at + 1 :]
    if how == "delete" and at < len(token):
        return token[:at] + token[at + 1 :]
    if how == "append":
        return token + char
    return token[:at] + char + token[at:]


tokens = st.one_of(
    keys, admin_tokens, mutated(keys), mutated(admin_tokens), st.text(tricky, max_size=80)
)


@given(tokens)
@example("rcg_aaaaaaaabbbbbbbb_" + "x" * 40 + "\n")
@example("rca_aaaaaaaaaaaa_" + "x" * 40 + "\n")
def test_a_bearer_token_is_a_key_or_admin_token_exactly_when_it_has_the_format(
    token: str,
) -> None:
    cred = parse_bearer(f"Bearer {token}", ADMIN)
    presented = token.strip()
    if is_key(presented):
        assert cred == KeyCredential(
            presented[4:12], presented[12:20], hashlib.sha256(presented.encode()).hexdigest()
        )
    elif is_admin_token(presented):
        assert cred == AdminTokenCredential(
            presented[4:16], hashlib.sha256(presented.encode()).hexdigest()
        )
    elif presented == ADMIN:
        assert cred == AdminCredential()
    else:
        assert cred == InvalidCredential()


@given(st.text(max_size=100))
@example("Bearer")
@example("Bearer ")
@example(" Bearer x")
@example("bEaReR  " + ADMIN + "  ")
def test_any_authorization_header_is_classified_without_raising(header: str) -> None:
    cred = parse_bearer(header, ADMIN)
    if not header:
        assert cred is None
    else:
        assert isinstance(
            cred, KeyCredential | AdminCredential | AdminTokenCredential | InvalidCredential
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        assert cred is None or cred == InvalidCredential()


@given(st.text(tricky, max_size=40))
def test_the_bootstrap_token_matches_itself_only(token: str) -> None:
    cred = parse_bearer(f"Bearer {token}", ADMIN)
    assert (cred == AdminCredential()) == (token.strip() == ADMIN)
    assert parse_bearer(f"Bearer {token}", "") != AdminCredential()  # unset: nobody


@pytest.mark.parametrize("presented", [ADMIN, ADMIN[:-1], ADMIN + "x", "x" * 64])
def test_the_bootstrap_token_is_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # what gateway.access.credentials calls
    cred = parse_bearer(f"Bearer {presented}", ADMIN)
    assert compared == [(presented.encode(), ADMIN.encode())]
    assert (cred == AdminCredential()) == (presented == ADMIN)


@given(st.text(tricky, max_size=20))
@example("aaaaaaaabbbbbbbb\n")
def test_key_ids_split_only_when_well_formed(key_id: str) -> None:
    expected = len(key_id) == 16 and all(c in ID_CHARS for c in key_id)
    parts = split_key_id(key_id)
    assert (parts is not None) == expected
    if parts is not None:
        assert parts == (key_id[:8], key_id[8:])


def request_id_like(draw_alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(draw_alphabet, min_size=0, max_size=130),
        st.text(st.sampled_from(REQUEST_ID_CHARS), min_size=120, max_size=130),
        st.uuids().map(str).flatmap(lambda u: st.sampled_from([u, u + "\n", " " + u, u + "/x"])),
    )


@given(request_id_like(tricky))
@example("a" * 128)
@example("a" * 129)
@example("abc\n")
def test_request_ids_are_1_to_128_of_letters_digits_dash_and_underscore(rid: str) -> None:
    """The rule RunComfy's partner nodes validate ids with; deployment ids follow it too."""
    expected = 1 <= len(rid) <= 128 and all(c in REQUEST_ID_CHARS for c in rid)
    assert bool(REQUEST_ID_RE.fullmatch(rid)) == expected
    assert bool(DEPLOYMENT_ID_RE.fullmatch(rid)) == expected


@given(st.text(tricky, max_size=70))
@example("design\n")
def test_team_ids_are_lowercase_slugs(team_id: str) -> None:
    expected = (
        1 <= len(team_id) <= 63
        and team_id[0] in ID_CHARS
        and all(c in ID_CHARS + "_-" for c in team_id)
    )
    assert bool(TEAM_ID_RE.fullmatch(team_id)) == expected


@given(st.text(st.sampled_from([*"0123456789-\na", "\u0663", "\u06f1"]), max_size=45))
@example("1-2\n")
@example("\u0663-1")  # ARABIC-INDIC DIGIT THREE
@example("18446744073709551616-0")
@example("18446744073709551615-18446744073709551615")
def test_audit_cursors_are_ascii_stream_ids(cursor: str) -> None:
    """A Unicode digit or a newline would reach Redis as a stream id it cannot parse."""
    first, dash, second = cursor.partition("-")
    expected = all(
        1 <= len(part) <= 20 and all(c in string.digits for c in part) for part in (first, second)
    ) and bool(dash)
    assert bool(ENTRY_ID_RE.fullmatch(cursor)) == expected
    parsed = parse_entry_id(cursor)
    if expected and all(int(part) < 2**64 for part in (first, second)):
        assert parsed == (int(first), int(second))
    else:
        assert parsed is None  # Redis would answer an error, not an empty page


@given(st.text(tricky, max_size=14))
def test_admin_token_ids_are_12_lowercase_alphanumerics(token_id: str) -> None:
    expected = len(token_id) == 12 and all(c in ID_CHARS for c in token_id)
    assert bool(ADMIN_TOKEN_ID_RE.fullmatch(token_id)) == expected
