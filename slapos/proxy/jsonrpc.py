"""JSON-RPC `slapos.*.v0.*` (protocol.md §6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slapos.proxy.app import Handler


def routes() -> dict[str, tuple[frozenset[str], Handler]]:
    return {}
