"""HATEOAS subset (protocol.md §7) for `slapos service list/info`, `computer list/info`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slapos.proxy.app import ProxyApp, Request, Response


def dispatch(app: ProxyApp, request: Request) -> Response:
    from slapos.proxy.app import text

    return text("not yet", 404)
