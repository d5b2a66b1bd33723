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
