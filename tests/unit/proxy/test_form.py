"""slapos.proxy.form decodes like parse_qs(keep_blank_values=True), last value kept."""

from __future__ import annotations

import random
from urllib.parse import parse_qs, urlencode

import pytest

from slapos.proxy.form import CACHED_FIELD_BYTES, parse_form


def reference(data: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(data, keep_blank_values=True).items()}


@pytest.mark.parametrize(
    "data",
    ["", "a=1", "a=1&a=2", "a", "a=", "=", "&&a=1&&", "a=x+y%2Bz", "%E2%82%AC=%C3%A9",
     "a=%", "a=%G1", "a=%4", "a=%ff%fe", "a=b=c", "k=%3Cmarshal%3E%3Cnone%2F%3E%3C%2Fmarshal%3E",
     "a=%2541", "a=%253C", "a=%%3C", "a=%3c%3C%3", "a=%25%32%35", "a=%E2%82%3C"],
)  # fmt: skip
def test_same_as_parse_qs(data: str) -> None:
    assert parse_form(data.encode()) == reference(data)
    assert parse_form(data) == reference(data)


def test_random_forms_match_parse_qs() -> None:
    rng = random.Random(4)
    alphabet = "ab =&+%<>\"'/?#é€\x00\n;,:"
    for _ in range(3000):
        fields = {
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))): "".join(
                rng.choice(alphabet) for _ in range(rng.randint(0, 40))
            )
            for _ in range(rng.randint(0, 5))
        }
        body = urlencode(fields)
        assert parse_form(body.encode()) == reference(body)
        raw = "".join(rng.choice("ab=&+%2Fé%") for _ in range(rng.randint(0, 20)))
        assert parse_form(raw.encode()) == reference(raw)


def test_long_fields_are_decoded_without_the_cache() -> None:
    value = "<x>" * CACHED_FIELD_BYTES
    body = urlencode({"xml": value, "xml2": value})
    assert parse_form(body.encode()) == {"xml": value, "xml2": value}


def test_random_escapes_match_parse_qs() -> None:
    """Percent escapes valid and not (bad hex, cut short, `%%`, at the end), next to the
    bytes the C fast path treats specially (`=`, CR, LF, spaces, `_`)."""
    rng = random.Random(7)
    alphabet = ["%", "%4", "%41", "%e9", "%E2%82%AC", "%zz", "%%", "=", "\r", "\n", " ", "\t",
                "_", "+", "a", "F", "0", "%0d%0a", "%3D", "%25", "é"]  # fmt: skip
    for _ in range(5000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        for data in (f"k={raw}", raw, f"k={raw}&{raw}=v"):
            assert parse_form(data.encode()) == reference(data), data


def test_percent_decode_equals_unquote_to_bytes() -> None:
    from urllib.parse import unquote_to_bytes

    from slapos.proxy.form import percent_decode

    rng = random.Random(11)
    pieces = [b"%", b"%4", b"%41", b"%fF", b"%g1", b"=", b"==", b"\r\n", b"\n", b"\x00", b"\xff",
              b" ", b"a", b"%3d", b"%0A"]  # fmt: skip
    for _ in range(5000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 10)))
        assert percent_decode(raw) == unquote_to_bytes(raw), raw
