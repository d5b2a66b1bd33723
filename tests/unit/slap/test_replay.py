"""Our library sends exactly what upstream's sends.

tests/data/wire/flow.py was run with upstream 1.26.1's library against upstream's proxy and
recorded. Here the same flow runs with our library against a server that replays the
recorded answers; every request we make must match the recorded one: path, query, form
fields (marshalled documents byte for byte) and the X-SlapPartition header.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from urllib.parse import parse_qs

from slapos import slap as slap_module
from slapos.slap import NotFoundError, wire

WIRE = Path(__file__).parents[2] / "data" / "wire"
TRAFFIC = json.loads((WIRE / "upstream-1.26.1-traffic.json").read_text())


def load_flow():
    spec = importlib.util.spec_from_file_location("wire_flow", WIRE / "flow.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.flow


def test_same_requests_as_upstream(fake_master):
    # upstream asks getHateoasUrl at connection time; we only do when HATEOAS is needed
    recorded = [r for r in TRAFFIC if r["path"] != "getHateoasUrl"]
    fake_master.script = [
        (r["status"], r.get("body", "")) if isinstance(r["status"], int) else (404, "")
        for r in recorded
    ]
    result = load_flow()(slap_module, wire.dumps, fake_master.url, "COMP-LOCAL")

    assert len(fake_master.requests) == len(recorded)
    for ours, theirs in zip(fake_master.requests, recorded, strict=True):
        assert ours.path == "/" + theirs["path"]
        if theirs["data"] is None:
            assert ours.method == "GET"
            expected = {k: [v] for k, v in (theirs["params"] or {}).items()}
            assert ours.query == expected, theirs["path"]
        else:
            assert ours.method == "POST"
            sent = {
                k: v[0] for k, v in parse_qs(ours.body.decode(), keep_blank_values=True).items()
            }
            assert sent == {k: str(v) for k, v in theirs["data"].items()}, theirs["path"]
            assert ours.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert ours.headers.get("Authorization") == theirs.get("auth"), theirs["path"]

    # and what the flow got back is what upstream's library got
    assert result["connection"] == {"k": "v", "url": "http://r.example.invalid"}
    assert [p.getId() for p in result["partitions"]] == ["slappart0", "slappart1", "slappart2"]
    assert result["products"] == []
    assert isinstance(result["refused"], NotFoundError)
