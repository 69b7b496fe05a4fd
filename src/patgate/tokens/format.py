"""GitHub-compatible token formats: generation, offline validation and hashing.

Classic-style tokens (40 chars) are a 4-char prefix, 30 random Base62 characters and a
6-char checksum. As on GitHub, that checksum covers only the 30 random characters, so
swapping one known prefix for another (``ghp_`` -> ``ghs_``) still yields a well-formed
token; the kind is decided by the prefix and the database lookup decides the rest.

Fine-grained tokens (93 chars) are ``github_pat_`` + 22 chars + ``_`` + 59 chars. GitHub
documents no checksum for them, so patgate reserves the last 6 of the 59 chars for the
checksum of the whole body after ``github_pat_``; any single changed character is
rejected here, before touching the database.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import string
import zlib
from dataclasses import dataclass

__all__ = [
    "ParsedToken",
    "TokenKind",
    "base62_crc32",
    "generate_classic",
    "generate_fine_grained",
    "generate_installation",
    "hash_token",
    "parse",
]

BASE62_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
CHECKSUM_LENGTH = 6

CLASSIC_LENGTH = 40
CLASSIC_PREFIX_LENGTH = 4
CLASSIC_RANDOM_LENGTH = 30

FINE_GRAINED_PREFIX = "github_pat_"
FINE_GRAINED_ID_LENGTH = 22
FINE_GRAINED_SECRET_LENGTH = 59
FINE_GRAINED_LENGTH = (
    len(FINE_GRAINED_PREFIX) + FINE_GRAINED_ID_LENGTH + 1 + FINE_GRAINED_SECRET_LENGTH
)


class TokenKind(enum.StrEnum):
    """What a well-formed token is, judged from its shape and prefix alone."""

    FINE_GRAINED = "fine_grained"
    CLASSIC = "classic"
    INSTALLATION = "installation"
    # gho_/ghu_/ghr_: well-formed GitHub tokens that patgate never issues.
    FOREIGN = "foreign"


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A token that passed the offline format and checksum checks."""

    kind: TokenKind
    value: str


CLASSIC_PREFIXES: dict[str, TokenKind] = {
    "ghp_": TokenKind.CLASSIC,
    "ghs_": TokenKind.INSTALLATION,
    "gho_": TokenKind.FOREIGN,
    "ghu_": TokenKind.FOREIGN,
    "ghr_": TokenKind.FOREIGN,
}


def base62_crc32(data: str) -> str:
    """Return the 6-char checksum of ``data``: its UTF-8 CRC32 in Base62, zero-padded.

    The alphabet is ``0-9A-Za-z``. Raises ``UnicodeEncodeError`` for lone surrogates.
    """
    number = zlib.crc32(data.encode("utf-8"))
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62_ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(CHECKSUM_LENGTH, "0")


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62_ALPHABET) for _ in range(length))


def _generate_classic_style(prefix: str) -> str:
    body = _random_base62(CLASSIC_RANDOM_LENGTH)
    return prefix + body + base62_crc32(body)


def generate_fine_grained() -> str:
    """Return a new random fine-grained token (``github_pat_…``, 93 chars)."""
    body = (
        _random_base62(FINE_GRAINED_ID_LENGTH)
        + "_"
        + _random_base62(FINE_GRAINED_SECRET_LENGTH - CHECKSUM_LENGTH)
    )
    return FINE_GRAINED_PREFIX + body + base62_crc32(body)


def generate_classic() -> str:
    """Return a new random classic personal access token (``ghp_…``, 40 chars)."""
    return _generate_classic_style("ghp_")


def generate_installation() -> str:
    """Return a new random installation access token (``ghs_…``, 40 chars)."""
    return _generate_classic_style("ghs_")


def _is_base62(text: str) -> bool:
    # str.isalnum alone would accept non-ASCII letters and digits.
    return text.isascii() and text.isalnum()


def _has_valid_checksum(body: str, checksum: str) -> bool:
    return _is_base62(checksum) and checksum == base62_crc32(body)


def parse(value: str) -> ParsedToken | None:
    """Return the token's kind and value if it is well formed, otherwise ``None``.

    ``None`` covers non-``str`` input, wrong length, characters outside the expected
    alphabet (including surrounding whitespace), unknown prefixes and bad checksums.
    Never raises. Only the format is checked: a ``ParsedToken`` may still be unknown,
    revoked or expired.
    """
    if not isinstance(value, str):
        return None
    # The length check comes first so arbitrarily large input is rejected in O(1).
    if len(value) == CLASSIC_LENGTH:
        kind = CLASSIC_PREFIXES.get(value[:CLASSIC_PREFIX_LENGTH])
        body_end = CLASSIC_PREFIX_LENGTH + CLASSIC_RANDOM_LENGTH
        body = value[CLASSIC_PREFIX_LENGTH:body_end]
        if kind is None or not _is_base62(body):
            return None
        if not _has_valid_checksum(body, value[body_end:]):
            return None
        return ParsedToken(kind, value)
    if len(value) == FINE_GRAINED_LENGTH:
        if not value.startswith(FINE_GRAINED_PREFIX):
            return None
        body = value[len(FINE_GRAINED_PREFIX) : -CHECKSUM_LENGTH]
        token_id, separator, secret = body.partition("_")
        if len(token_id) != FINE_GRAINED_ID_LENGTH or not separator:
            return None
        if not (_is_base62(token_id) and _is_base62(secret)):
            return None
        if not _has_valid_checksum(body, value[-CHECKSUM_LENGTH:]):
            return None
        return ParsedToken(TokenKind.FINE_GRAINED, value)
    return None


def hash_token(value: str, key: bytes | None = None) -> str:
    """Return the 64-char lowercase hex digest of the whole token, for storage and lookup.

    Plain SHA-256 of the UTF-8 token without ``key``; HMAC-SHA256 keyed with ``key``
    when one is given. Raises ``UnicodeEncodeError`` for lone surrogates.
    """
    data = value.encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()
