"""Upstream's slapos.slap library drives our proxy and 1.26.1's through protocol.md §8;
both must answer the same, byte for byte (timestamps aside), except where we deliberately
do better (docs/proxy.rst, "Deviations"). Ours on sqlite and on PostgreSQL, and on
PostgreSQL served by granian (what docs/proxy.rst advises a fleet)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.proxy import BACKENDS, FLEET, backend_uri, start_proxy
from tests.fixtures.upstream import Upstream, start_upstream_proxy

#: step -> (our value, 1.26.1's value): where we deliberately answer differently.
DEVIATIONS = {
    # served by us (no-op, like the master); 404 upstream.
    "related instances": ({"ok": None}, {"error": "NotFoundError"}),
    # unknown objects are 404 (NotFoundError), not 500 (ServerError).
    "unknown partition": ({"error": "NotFoundError"}, {"error": "ServerError"}),
    "unknown computer": ({"error": "NotFoundError"}, {"error": "ServerError"}),
    # bad input is 400 with a reason, not 500.
    "bad supply state": ({"error": "HTTPError", "status": 400}, {"error": "ServerError"}),
    "request with bad xml": ({"error": "HTTPError", "status": 400}, {"error": "ServerError"}),
    "rename unknown partition": (
        {"error": "NotFoundError"},
        {"ok": "Unknown partition 'nope' on 'COMP-LOCAL'"},
    ),
    "destroyed unknown partition": (
        {"error": "NotFoundError"},
        {"ok": "Unknown partition 'nope' on 'COMP-LOCAL'"},
    ),
}
SCENARIO = Path(__file__).resolve().parents[1] / "data" / "proxy" / "scenario.py"


def _run(upstream: Upstream, url: str, computer: str) -> list[dict[str, Any]]:
    result = upstream.python_code(
        f"import sys, runpy; sys.argv = ['x', {url!r}, {computer!r}]; "
        f"runpy.run_path({str(SCENARIO)!r}, run_name='__main__')"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


@pytest.mark.parametrize("served", [*BACKENDS, FLEET])
def test_same_answers_as_upstream(
    upstream: Upstream, tmp_path: Path, served: str, request: pytest.FixtureRequest
) -> None:
    backend, _, server = served.partition("-")
    ours_gen = start_proxy(
        tmp_path / "ours",
        computer_id="COMP-LOCAL",
        database_uri=backend_uri(request, backend),
        http_server=server or None,
    )
    theirs_gen = start_upstream_proxy(upstream, tmp_path / "theirs", computer_id="COMP-LOCAL")
    ours_proxy = next(ours_gen)
    theirs_proxy = next(theirs_gen)
    try:
        ours = _run(upstream, ours_proxy.url, "COMP-LOCAL")
        theirs = _run(upstream, theirs_proxy.url, "COMP-LOCAL")
    finally:
        for gen in (ours_gen, theirs_gen):
            next(gen, None)
    (tmp_path / "ours.json").write_text(json.dumps(ours, indent=1))
    (tmp_path / "theirs.json").write_text(json.dumps(theirs, indent=1))
    assert [s["step"] for s in ours] == [s["step"] for s in theirs]
    for mine, reference in zip(ours, theirs, strict=True):
        name = mine["step"]
        if name in DEVIATIONS:
            assert (mine.pop("value"), reference.pop("value")) == DEVIATIONS[name], name
        assert mine == reference, f"step {name!r} differs (see {tmp_path})"
