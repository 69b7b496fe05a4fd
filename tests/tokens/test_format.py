import hashlib
import hmac
import re
import string
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patgate.tokens.format import (
    ParsedToken,
    TokenKind,
    base62_crc32,
    generate_classic,
    generate_fine_grained,
    generate_installation,
    hash_token,
    parse,
)

# Written independently of the module so an encoding mistake there cannot hide here.
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
KNOWN_PREFIX_KINDS = {
    "ghp_": TokenKind.CLASSIC,
    "ghs_": TokenKind.INSTALLATION,
    "gho_": TokenKind.FOREIGN,
    "ghu_": TokenKind.FOREIGN,
    "ghr_": TokenKind.FOREIGN,
}
CLASSIC_SHAPE = re.compile(r"gh[psour]_[A-Za-z0-9]{36}")
FINE_GRAINED_SHAPE = re.compile(r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}")
# Replacement characters beyond the alphabet: separators, whitespace, non-ASCII
# letters and digits that str.isalnum() accepts, a lone surrogate, NUL.
ODD_CHARS = "_- \t\n\x00\u00e9\u0661\uff21\U0001d7d8\ud800"

GENERATORS: list[tuple[Callable[[], str], TokenKind, str, int]] = [
    (generate_fine_grained, TokenKind.FINE_GRAINED, "github_pat_", 93),
    (generate_classic, TokenKind.CLASSIC, "ghp_", 40),
    (generate_installation, TokenKind.INSTALLATION, "ghs_", 40),
]
GENERATOR_IDS = [kind.value for _, kind, _, _ in GENERATORS]
ONLY_GENERATORS = pytest.mark.parametrize(
    "generate", [generate for generate, _, _, _ in GENERATORS], ids=GENERATOR_IDS
)


def independent_base62(number: int, width: int = 6) -> str:
    digits = ""
    for _ in range(width):
        digits = ALPHABET[number % 62] + digits
        number //= 62
    assert number == 0
    return digits


def classic_token(prefix: str, body: str) -> str:
    return prefix + body + independent_base62(zlib.crc32(body.encode()))


def fine_grained_token(token_id: str, secret: str) -> str:
    body = token_id + "_" + secret
    return "github_pat_" + body + independent_base62(zlib.crc32(body.encode()))


def replace_at(token: str, position: int, char: str) -> str:
    return token[:position] + char + token[position + 1 :]


def assert_single_change_rejected(original: str, position: int, char: str) -> None:
    """A one-character change is rejected, except a swap between known 40-char prefixes.

    GitHub's 40-char checksum covers only the 30 random characters, so ``ghp_`` -> ``ghs_``
    still yields a well-formed token; it must then be reported with the new prefix's kind.
    """
    mutated = replace_at(original, position, char)
    parsed = parse(mutated)
    if parsed is None:
        return
    assert len(original) == 40
    assert position < 4
    assert parsed == ParsedToken(KNOWN_PREFIX_KINDS[mutated[:4]], mutated)


@pytest.mark.parametrize(("generate", "kind", "prefix", "length"), GENERATORS, ids=GENERATOR_IDS)
def test_generated_tokens_have_the_documented_shape_and_parse(
    generate: Callable[[], str], kind: TokenKind, prefix: str, length: int
) -> None:
    for _ in range(50):
        token = generate()
        assert len(token) == length
        assert token.startswith(prefix)
        shape = FINE_GRAINED_SHAPE if kind is TokenKind.FINE_GRAINED else CLASSIC_SHAPE
        assert shape.fullmatch(token)
        assert parse(token) == ParsedToken(kind, token)


@ONLY_GENERATORS
def test_generated_tokens_are_unique(generate: Callable[[], str]) -> None:
    assert len({generate() for _ in range(200)}) == 200


def test_checksums_match_independent_computation() -> None:
    fine = generate_fine_grained()
    assert fine[-6:] == independent_base62(zlib.crc32(fine[11:-6].encode()))
    for token in (generate_classic(), generate_installation()):
        assert token[-6:] == independent_base62(zlib.crc32(token[4:34].encode()))


def test_known_vector() -> None:
    body = "abcdefghijABCDEFGHIJ0123456789"
    # zlib.crc32 = 2010150927 = 2*62^5 + 12*62^4 + 2*62^3 + 24*62^2 + 5*62 + 9.
    assert zlib.crc32(body.encode()) == 2010150927
    assert independent_base62(2010150927) == "2C2O59"
    assert base62_crc32(body) == "2C2O59"
    token = "ghp_" + body + "2C2O59"
    assert parse(token) == ParsedToken(TokenKind.CLASSIC, token)


def test_checksum_is_left_padded_with_zeros() -> None:
    assert base62_crc32("") == "000000"
    body = "0" * 27 + "405"
    assert zlib.crc32(body.encode()) == 8816593  # < 62**4, so two leading zeros
    assert base62_crc32(body) == independent_base62(8816593) == "00azb7"


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_checksum_is_six_base62_chars(data: str) -> None:
    try:
        checksum = base62_crc32(data)
    except UnicodeEncodeError:
        return
    assert checksum == independent_base62(zlib.crc32(data.encode()))


def test_handmade_tokens_of_every_prefix_parse() -> None:
    body = "Z" * 30
    for prefix, kind in KNOWN_PREFIX_KINDS.items():
        token = classic_token(prefix, body)
        assert parse(token) == ParsedToken(kind, token)

    fine = fine_grained_token("A" * 22, "b" * 53)
    assert parse(fine) == ParsedToken(TokenKind.FINE_GRAINED, fine)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ghp_",
        "github_pat_",
        classic_token("ghx_", "a" * 30),  # unknown prefix
        classic_token("GHP_", "a" * 30),
        classic_token("ghp-", "a" * 30),
        classic_token("ghp_", "a" * 29 + "_"),
        # Correct checksums over characters that str.isalnum() accepts but are not ASCII.
        classic_token("ghp_", "\u00e9" + "a" * 29),
        classic_token("ghs_", "\u0661" * 30),
        fine_grained_token("\uff21" * 22, "b" * 53),
        fine_grained_token("A" * 22, "b" * 52 + "\U0001d7d8"),
        fine_grained_token("A" * 22, "b" * 52 + "_"),
        classic_token("ghp_", "a" * 30)[:-1],
        classic_token("ghp_", "a" * 30) + "0",
        "ghp_" + "a" * 30 + "000000",  # wrong checksum
        "ghp_" + "a" * 36,
        "github_pat_" + "a" * 82,  # no separator
        "github_pat_" + "a" * 23 + "_" + "a" * 58,  # separator one place late
        "github_pat_" + "a" * 22 + "_" + "a" * 59,  # wrong checksum
    ],
)
def test_malformed_tokens_are_rejected(value: str) -> None:
    assert parse(value) is None


@ONLY_GENERATORS
@pytest.mark.parametrize("wrap", [" {}", "{} ", "{}\n", "\t{}", "'{}'", "Bearer {}", "{0}{0}"])
def test_surrounding_text_is_rejected(generate: Callable[[], str], wrap: str) -> None:
    assert parse(wrap.format(generate())) is None


@pytest.mark.parametrize("value", [None, 42, b"ghp_" + b"a" * 36, ["ghp_"], object()])
def test_non_str_input_is_rejected(value: object) -> None:
    assert parse(value) is None  # type: ignore[arg-type]


@ONLY_GENERATORS
def test_every_single_character_change_is_rejected_exhaustively(
    generate: Callable[[], str],
) -> None:
    token = generate()
    for position, original in enumerate(token):
        for char in ALPHABET + ODD_CHARS:
            if char != original:
                assert_single_change_rejected(token, position, char)


def test_prefix_swaps_are_the_only_accepted_changes_for_40_char_tokens() -> None:
    # Documents the GitHub-compatible weakness: the checksum does not cover the prefix.
    token = generate_classic()
    swapped = replace_at(token, 2, "s")
    assert parse(swapped) == ParsedToken(TokenKind.INSTALLATION, swapped)
    swapped = replace_at(token, 2, "o")
    assert parse(swapped) == ParsedToken(TokenKind.FOREIGN, swapped)


@given(data=st.data(), generator=st.sampled_from([g for g, _, _, _ in GENERATORS]))
@settings(max_examples=200, deadline=None)
def test_any_single_character_change_is_rejected(
    data: st.DataObject, generator: Callable[[], str]
) -> None:
    token = generator()
    position = data.draw(st.integers(0, len(token) - 1), label="position")
    char = data.draw(st.characters().filter(lambda c: c != token[position]), label="char")
    assert_single_change_rejected(token, position, char)


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_parse_never_raises_on_text(value: str) -> None:
    parse(value)


@given(st.text(alphabet=ALPHABET + "_", min_size=36, max_size=100))
@settings(max_examples=200, deadline=None)
def test_parse_never_raises_on_near_miss_text(tail: str) -> None:
    for prefix in ("ghp_", "ghs_", "github_pat_"):
        value = (prefix + tail)[:93]
        result = parse(value)
        assert result is None or result.value == value


@given(st.binary(min_size=0, max_size=200))
@settings(max_examples=200, deadline=None)
def test_parse_never_raises_on_binary_ish_strings(raw: bytes) -> None:
    parse(raw.decode("latin-1"))
    parse(raw.decode("utf-8", errors="surrogateescape"))


@pytest.mark.parametrize("size", [10**6, 10**7])
def test_huge_inputs_are_rejected(size: int) -> None:
    assert parse("ghp_" + "a" * size) is None
    assert parse("github_pat_" + "\ud800" * size) is None


def test_hash_token_is_64_lowercase_hex_and_stable() -> None:
    token = generate_fine_grained()
    digest = hash_token(token)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == hash_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in digest


def test_hash_token_with_key_is_hmac_and_differs() -> None:
    token = generate_classic()
    keyed = hash_token(token, key=b"k" * 32)
    assert re.fullmatch(r"[0-9a-f]{64}", keyed)
    assert keyed == hmac.new(b"k" * 32, token.encode(), hashlib.sha256).hexdigest()
    assert keyed != hash_token(token)
    assert keyed != hash_token(token, key=b"j" * 32)
    assert keyed == hash_token(token, key=b"k" * 32)


def test_hash_token_distinguishes_tokens() -> None:
    token = generate_installation()
    assert hash_token(token) != hash_token(replace_at(token, 10, "_"))
