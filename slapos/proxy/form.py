"""`application/x-www-form-urlencoded` bodies and query strings, decoded fast.

Same result as `urllib.parse.parse_qs(text, keep_blank_values=True)` with the last value
of a repeated field kept, for every valid UTF-8 input. It exists because the SLAP calls
are form posts whose fields mostly repeat from one call to the next (software release
URL, `filter_xml`, `state`, `shared_xml`, computer and partition ids): short `name=value`
pairs are decoded once and remembered, and percent escapes are decoded in C (binascii's
quoted-printable decoder, `%` read as `=`) rather than by unquote_to_bytes's Python loop
(benchmarks/proxy.py measures the whole call).

Imports only the standard library.
"""

from __future__ import annotations

from binascii import a2b_qp
from functools import lru_cache
from urllib.parse import unquote_to_bytes

#: `name=value` pairs up to this size (encoded) are remembered: ids, URLs, the constant
#: documents.
CACHED_FIELD_BYTES = 512


def percent_decode(raw: bytes) -> bytes:
    """`%XX` -> one byte; a `%` not followed by two hex digits stays as it is.

    a2b_qp decodes `=XX` the same way in C. Its other rules (soft line breaks, `==`, a
    trailing `=`, an invalid `=X` kept) only apply to input this path refuses (`=`, CR or
    LF in it) or shorten the result by less than two bytes per `%`: the length check
    below sends any such input to unquote_to_bytes.
    """
    if b"%" not in raw:
        return raw
    if b"=" not in raw and b"\n" not in raw and b"\r" not in raw:
        decoded = a2b_qp(raw.replace(b"%", b"="))
        if len(decoded) == len(raw) - 2 * raw.count(b"%"):
            return decoded
    return unquote_to_bytes(raw)


def _text(raw: bytes) -> str:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    return percent_decode(raw).decode("utf-8", "replace")


@lru_cache(maxsize=1024)
def _pair(pair: bytes) -> tuple[str, str]:
    name, _, value = pair.partition(b"=")
    return _text(name), _text(value)


def parse_form(data: bytes | str) -> dict[str, str]:
    """`a=1&b=x+y&c` -> {"a": "1", "b": "x y", "c": ""}; the last of repeated names wins."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    form: dict[str, str] = {}
    for pair in data.split(b"&"):
        if len(pair) <= CACHED_FIELD_BYTES:
            if pair:
                name, value = _pair(pair)
                form[name] = value
        else:
            name_bytes, _, value_bytes = pair.partition(b"=")
            form[_text(name_bytes)] = _text(value_bytes)
    return form
