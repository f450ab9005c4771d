"""What a caller presents: parsing of team API keys and admin tokens (no I/O here).

A team key looks like ``rcg_<slot><kid>_<secret>``: ``slot`` is the random tag of the team's Redis
hash slot, ``kid`` the key's id, and ``rcg_<slot><kid>`` the public prefix an admin sees. Only the
SHA-256 of the whole key is stored. Keys carry 238 bits of randomness, so an unsalted fast hash is
the right tool (as for GitHub or Stripe tokens): there is nothing to brute-force.

A named admin token looks like ``rca_<id>_<secret>``: a different prefix, so neither kind can be
mistaken for the other (by the gateway, by log scrubbing or by secret scanners).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

from gateway.common.records import record

KEY_PREFIX = "rcg_"
ADMIN_TOKEN_PREFIX = "rca_"  # noqa: S105 - a prefix, not a secret
ID_ALPHABET = string.ascii_lowercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits
SLOT_LEN = 8
KID_LEN = 8
SECRET_LEN = 40
ADMIN_TOKEN_ID_LEN = 12
_KEY_RE = re.compile(
    rf"^{KEY_PREFIX}([a-z0-9]{{{SLOT_LEN}}})([a-z0-9]{{{KID_LEN}}})_([A-Za-z0-9]{{{SECRET_LEN}}})$"
)
_KEY_ID_RE = re.compile(rf"^([a-z0-9]{{{SLOT_LEN}}})([a-z0-9]{{{KID_LEN}}})$")
_ADMIN_TOKEN_RE = re.compile(
    rf"^{ADMIN_TOKEN_PREFIX}([a-z0-9]{{{ADMIN_TOKEN_ID_LEN}}})_([A-Za-z0-9]{{{SECRET_LEN}}})$"
)
ADMIN_TOKEN_ID_RE = re.compile(rf"^[a-z0-9]{{{ADMIN_TOKEN_ID_LEN}}}$")


@record
class KeyCredential:
    """A syntactically valid team key: where to look it up, and its digest to compare."""

    slot: str
    kid: str
    digest: str

    @property
    def key_id(self) -> str:
        return self.slot + self.kid


@record
class AdminCredential:
    """The caller presented the bootstrap admin token (``GATEWAY_ADMIN_TOKEN``)."""


@record
class AdminTokenCredential:
    """A syntactically valid named admin token, still to be verified in Redis."""

    token_id: str
    digest: str


@record
class InvalidCredential:
    """A bearer token that is neither a well-formed key nor an admin token."""


Credential = KeyCredential | AdminCredential | AdminTokenCredential | InvalidCredential


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def random_id(length: int) -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def _secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LEN))


def new_key(slot: str) -> tuple[str, KeyCredential]:
    """A fresh key for the team in ``slot``, and its credential."""
    kid = random_id(KID_LEN)
    key = f"{KEY_PREFIX}{slot}{kid}_{_secret()}"
    return key, KeyCredential(slot, kid, digest(key))


def new_admin_token() -> tuple[str, AdminTokenCredential]:
    """A fresh named admin token and its credential."""
    token_id = random_id(ADMIN_TOKEN_ID_LEN)
    token = f"{ADMIN_TOKEN_PREFIX}{token_id}_{_secret()}"
    return token, AdminTokenCredential(token_id, digest(token))


def split_key_id(key_id: str) -> tuple[str, str] | None:
    """``(slot, kid)`` of a public key id, or None when malformed."""
    match = _KEY_ID_RE.fullmatch(key_id)
    return (match[1], match[2]) if match else None


def parse_bearer(header: str | None, admin_token: str) -> Credential | None:
    """Classify an ``Authorization`` header; None when there is none."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return InvalidCredential()
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return AdminCredential()
    if match := _KEY_RE.fullmatch(token):
        return KeyCredential(match[1], match[2], digest(token))
    if match := _ADMIN_TOKEN_RE.fullmatch(token):
        return AdminTokenCredential(match[1], digest(token))
    return InvalidCredential()
