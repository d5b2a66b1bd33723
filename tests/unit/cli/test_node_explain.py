"""`slapos node explain` in-process: records read, unknown partition, JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from slapos.cli.context import Context
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

    # an instance_root that is not there is a configuration error, not "no partition"
    shutil.move(tmp_path / "inst", tmp_path / "elsewhere")
    ctx = Context.for_test(tmp_path)
    assert main(["node", "explain", "--cfg", str(cfg)], ctx=ctx) == 1
    err = ctx.stderr.getvalue()  # type: ignore[attr-defined]
    assert f"instance root {tmp_path / 'inst'} does not exist" in err


def test_rerun_names_the_slapos_that_ran(tmp_path: Path) -> None:
    """A newcomer runs `.venv/bin/slapos` without activating the venv: the rerun line names
    that script, since a bare `slapos` would not be found (or be another one)."""
    import os
    import subprocess
    import sys

    cfg = node(tmp_path)
    script = Path(sys.executable).parent / "slapos"
    assert script.is_file()

    def rerun_line(path: str, cfg: Path = cfg) -> str:
        env = {"HOME": str(tmp_path), "PATH": path}
        done = subprocess.run(
            [str(script), "node", "explain", "slappart0", "--cfg", str(cfg)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        [line] = [x for x in done.stdout.splitlines() if x.startswith("  rerun ")]
        return line

    assert rerun_line("/usr/bin:/bin").startswith(f"  rerun     {script} node instance --cfg ")
    on_path = f"{script.parent}{os.pathsep}/usr/bin:/bin"
    assert rerun_line(on_path).startswith("  rerun     slapos node instance --cfg ")
    # given relative to where explain ran, the configuration is named so it works anywhere
    relative = cfg.relative_to(tmp_path)
    assert f" --cfg {cfg} --only-cp " in rerun_line(on_path, relative)


def test_negative_lines_is_a_usage_error(tmp_path: Path) -> None:
    cfg = node(tmp_path)
    ctx = Context.for_test(tmp_path)
    code = main(["node", "explain", "--lines", "-5", "--cfg", str(cfg)], ctx=ctx)
    err = ctx.stderr.getvalue()  # type: ignore[attr-defined]
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "--lines must be 0 or more" in err
    assert ctx.stdout.getvalue() == ""  # type: ignore[attr-defined]
    ctx = Context.for_test(tmp_path)
    assert main(["node", "explain", "--lines", "0", "--cfg", str(cfg)], ctx=ctx) == 0
    assert "    | " not in ctx.stdout.getvalue()  # type: ignore[attr-defined]
