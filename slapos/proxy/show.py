"""`slapos proxy show`: tables of the proxy database."""

from __future__ import annotations

from typing import TextIO

SECTIONS = ("computers", "software", "partitions", "slaves", "params", "network")


def show(database: str, sections: list[str], out: TextIO, *, fmt: str = "text") -> None:
    out.write(f"Using database: {database}\\n")
