"""Counted nouns in what users read: "1 change", "2 changes", never "1 changes" or "change(s)"."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun agreeing with it; `plural` when not `singular` + "s"."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
