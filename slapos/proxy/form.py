"""`application/x-www-form-urlencoded` bodies and query strings, decoded fast.

Same result as `urllib.parse.parse_qs(text, keep_blank_values=True)` with the last value
of a repeated field kept, for every valid UTF-8 input. It exists because the SLAP calls
are form posts whose fields mostly repeat from one call to the next (software release
URL, `filter_xml`, `state`, `shared_xml`, computer and partition ids): short fields are
decoded once and remembered, and the others take `unquote_to_bytes` directly instead of
parse_qs's per-field regex split. On a requestComputerPartition body this takes ~6 us
where parse_qs took ~40 us (benchmarks/proxy.py measures the whole call).

Imports only the standard library.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote_to_bytes

#: Fields up to this size (encoded) are remembered: ids, URLs, the constant documents.
CACHED_FIELD_BYTES = 512


def _decode(raw: bytes) -> str:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


_decode_cached = lru_cache(maxsize=1024)(_decode)


def field_text(raw: bytes) -> str:
    """One encoded name or value: `+` is a space, `%XX` a byte, the bytes UTF-8."""
    if len(raw) <= CACHED_FIELD_BYTES:
        return _decode_cached(raw)
    return _decode(raw)


def parse_form(data: bytes | str) -> dict[str, str]:
    """`a=1&b=x+y&c` -> {"a": "1", "b": "x y", "c": ""}; the last of repeated names wins."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    form: dict[str, str] = {}
    for pair in data.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        form[field_text(name)] = field_text(value)
    return form
