"""Seed 004's headers in ``Sec-WebSocket-Protocol``: base58 (the Bitcoin
alphabet) of ``key:value`` lines joined by ``\\n`` - the codec and the
parser, table-driven and with Hypothesis (garbage only ever raises
``InvalidHeaders``, and quickly)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.protocol.resources import base58
from satchel.protocol.resources.headers import (
    MAX_ENCODED_CHARS,
    MAX_LINES,
    InvalidHeaders,
    encode_headers,
    subprotocol_headers,
)

# Known vectors of the Bitcoin alphabet (the draft-msporny-base58 examples).
VECTORS = [
    (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
    (b"The quick brown fox jumps over the lazy dog.", "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"),
    (bytes.fromhex("0000287fb4cd"), "11233QC4"),
    (b"\0", "1"),
    (b"\xff", "5Q"),
]


@pytest.mark.parametrize("raw, text", VECTORS)
def test_base58_vectors(raw: bytes, text: str) -> None:
    assert base58.encode(raw) == text
    assert base58.decode(text) == raw


@given(st.binary(max_size=300))
def test_base58_round_trips(raw: bytes) -> None:
    assert base58.decode(base58.encode(raw) or "1") == (raw or b"\0")


@pytest.mark.parametrize("text", ["0", "O", "I", "l", "abc+", "2NEpo7 TZ", "\u00e9", "", "1" * (MAX_ENCODED_CHARS + 1)])
def test_base58_refuses_what_is_not_base58(text: str) -> None:
    with pytest.raises(base58.InvalidBase58):
        base58.decode(text)


def test_the_seeds_example_headers() -> None:
    token = encode_headers({"x-m2-organization": "testOrg", "x-m2-project": "testProj"})
    assert base58.decode(token) == b"x-m2-organization:testOrg\nx-m2-project:testProj"
    assert subprotocol_headers(token) == {"x-m2-organization": "testOrg", "x-m2-project": "testProj"}


@pytest.mark.parametrize(
    "text, headers",
    [
        ("Authorization: Bearer abc\n", {"authorization": "Bearer abc"}),
        ("X-M2-Project:a:b:c", {"x-m2-project": "a:b:c"}),  # the value keeps its colons
        ("a:1\r\nb:2\r\n", {"a": "1", "b": "2"}),
        ("\n\n a : spaced \n", {"a": "spaced"}),
        ("a:first\na:second", {"a": "first"}),
        ("empty:", {"empty": ""}),
        ("tab:a\tb", {"tab": "a\tb"}),
    ],
)
def test_header_lines(text: str, headers: dict[str, str]) -> None:
    assert subprotocol_headers(base58.encode(text.encode())) == headers


@pytest.mark.parametrize(
    "token, reason",
    [
        ("0OIl", "not base58"),
        (base58.encode(b"\xff\xfe"), "UTF-8"),
        (base58.encode(b"no colon here"), "has no ':'"),
        (base58.encode(b"ok:1\nbroken"), "line 2"),
        (base58.encode(b":value"), "no valid header name"),
        (base58.encode(b"bad name:1"), "no valid header name"),
        (base58.encode(b"a:x\x00y"), "invalid value"),
        (base58.encode(b"a:x\ry"), "invalid value"),
        (base58.encode("\n".join(f"h{n}:v" for n in range(MAX_LINES + 1)).encode()), "more than"),
        (base58.encode(b"a:" + b"v" * 5000), "invalid value"),
        ("2" * (MAX_ENCODED_CHARS + 1), "longer than"),
    ],
)
def test_malformed_headers_say_why(token: str, reason: str) -> None:
    with pytest.raises(InvalidHeaders, match=reason):
        subprotocol_headers(token)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=200), st.text(alphabet=base58.ALPHABET, max_size=400),
                 st.binary(max_size=300).map(lambda raw: base58.encode(raw) or "1")))
def test_garbage_only_ever_raises_invalid_headers(token: str) -> None:
    try:
        headers = subprotocol_headers(token)
    except InvalidHeaders as exc:
        assert str(exc).startswith(("Sec-WebSocket-Protocol", "header line"))
    else:
        assert all(name == name.lower() for name in headers)


def test_the_largest_token_decodes_fast() -> None:
    token = "z" * MAX_ENCODED_CHARS  # the most arithmetic the decoder ever does
    started = time.perf_counter()
    with pytest.raises(InvalidHeaders):
        subprotocol_headers(token)
    assert time.perf_counter() - started < 0.5


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
                       st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs",),
                                             blacklist_characters="\x7f"), max_size=40).map(str.strip),
                       max_size=10))
def test_encoded_headers_come_back(headers: dict[str, str]) -> None:
    if not headers:
        return
    assert subprotocol_headers(encode_headers(headers)) == headers
