"""`slapos node explain` in-process: records read, unknown partition, JSON."""

from __future__ import annotations

import json
from pathlib import Path

from slapos.cli._common import Context
from slapos.cli.main import main
from slapos.grid.runrecord import RunRecord, Step


def node(tmp_path: Path) -> Path:
    root = tmp_path / "inst"
    (root / "slappart0" / ".slapgrid" / "log").mkdir(parents=True)
    (root / "slappart1").mkdir()
    (root / "slappart0" / ".slapgrid" / "log" / "instance.log").write_text(
        "Installing web.\nOSError: [Errno 28] No space left on device\n"
    )
    RunRecord(
        "slappart0",
        "failed",
        1000.0,
        requested_state="started",
        error="buildout failed",
        step=Step("buildout", name="web", message="No space left on device"),
        log=str(root / "slappart0" / ".slapgrid" / "log" / "instance.log"),
    ).write(root / "slappart0" / ".slapgrid")
    cfg = tmp_path / "slapos.cfg"
    cfg.write_text(
        f"[slapos]\ncomputer_id = C\nmaster_url = http://127.0.0.1:1\n"
        f"software_root = {tmp_path / 'soft'}\ninstance_root = {root}\n"
    )
    return cfg


def test_node_explain(tmp_path: Path) -> None:
    cfg = node(tmp_path)
    ctx = Context.for_test(tmp_path)
    assert main(["node", "explain", "--cfg", str(cfg)], ctx=ctx) == 0
    out = ctx.stdout.getvalue()  # type: ignore[attr-defined]
    assert out.startswith("slappart0 started: FAILED, last run 1970-01-01 00:16:40 UTC")
    assert "  hint      the disk is full" in out
    assert "    | OSError: [Errno 28] No space left on device" in out
    assert "slappart1: no run recorded yet" in out
    assert "\033[" not in out  # not a terminal: no colour

    ctx = Context.for_test(tmp_path)
    assert (
        main(["node", "explain", "slappart0", "--format", "json", "--cfg", str(cfg)], ctx=ctx) == 0
    )
    [data] = json.loads(ctx.stdout.getvalue())  # type: ignore[attr-defined]
    assert data["hint_name"] == "disk-full" and data["record"]["step"]["name"] == "web"

    ctx = Context.for_test(tmp_path)
    assert main(["node", "explain", "slappart7", "--cfg", str(cfg)], ctx=ctx) == 2
    assert "no partition slappart7 in " in ctx.stderr.getvalue()  # type: ignore[attr-defined]
