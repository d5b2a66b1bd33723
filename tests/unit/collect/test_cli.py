"""`slapos node collect` in-process (the real run is in tests/integration/test_collect.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from slapos.cli.context import Context
from slapos.cli.main import main
from tests.fakes import FakeRunner


def write_config(tmp_path: Path, collect: str = "") -> Path:
    cfg = tmp_path / "slapos.cfg"
    cfg.write_text(
        textwrap.dedent(
            f"""\
            [slapos]
            computer_id = COMP-1
            instance_root = {tmp_path}/srv
            [slapformat]
            partition_amount = 1
            user_base_name = nosuchuser
            [collect]
            measure_interval = 0.05
            """
        )
        + collect
    )
    return cfg


def test_needs_root(tmp_path: Path) -> None:
    ctx = Context.for_test(tmp_path, euid=1000)
    code = main(["node", "collect", "--cfg", str(write_config(tmp_path))], ctx=ctx)
    assert code == 5
    assert "must be run as root" in ctx.stderr.getvalue()  # type: ignore[attr-defined]


def test_missing_config_file(tmp_path: Path) -> None:
    ctx = Context.for_test(tmp_path, euid=0)
    code = main(["node", "collect", "--cfg", str(tmp_path / "nope.cfg")], ctx=ctx)
    assert code == 1
    assert "does not exist" in ctx.stderr.getvalue()  # type: ignore[attr-defined]


def test_run_in_process(tmp_path: Path) -> None:
    ctx = Context.for_test(tmp_path, euid=0, runner=FakeRunner(default=(127, "sensors: not found")))
    code = main(["node", "collect", "--cfg", str(write_config(tmp_path))], ctx=ctx)
    assert code == 0, ctx.stderr.getvalue()  # type: ignore[attr-defined]
    assert (tmp_path / "srv" / "var" / "data-log" / "collector.db").exists()
    assert (tmp_path / "srv" / "var" / "xml_report" / "COMP-1").is_dir()
