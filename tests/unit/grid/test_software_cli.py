"""`slapos node software` in process: exit codes of the paths that never reach buildout."""

from __future__ import annotations

from pathlib import Path

from slapos.cli.context import Context
from slapos.cli.main import main


def _cfg(tmp_path: Path, **extra: str) -> Path:
    (tmp_path / "soft").mkdir(exist_ok=True)
    (tmp_path / "inst").mkdir(exist_ok=True)
    values = {
        "computer_id": "COMP-1",
        "master_url": "http://127.0.0.1:9",
        "software_root": f"{tmp_path}/soft",
        "instance_root": f"{tmp_path}/inst",
        "pidfile_software": f"{tmp_path}/sr.pid",
        **extra,  # (a key set twice is an error)
    }
    lines = "".join(f"{k} = {v}\n" for k, v in values.items())
    cfg = tmp_path / "slapos.cfg"
    cfg.write_text("[slapos]\n" + lines)
    return cfg


def test_not_root_exits_5(tmp_path: Path) -> None:
    ctx = Context.for_test(tmp_path, euid=1000)
    assert main(["node", "software", "--cfg", str(_cfg(tmp_path))], ctx) == 5


def test_missing_configuration_exits_1(tmp_path: Path) -> None:
    ctx = Context.for_test(tmp_path)
    assert main(["node", "software", "--cfg", str(tmp_path / "nope.cfg")], ctx) == 1


def test_missing_software_root_exits_1_before_asking_the_master(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, root_check="false", software_root=str(tmp_path / "missing"))
    ctx = Context.for_test(tmp_path)
    assert main(["node", "software", "--cfg", str(cfg), "--now"], ctx) == 1
    assert not (tmp_path / "sr.pid").exists()  # the lock is released


def test_maximal_delay_sleeps_unless_now(tmp_path: Path) -> None:
    from tests.fakes import FakeClock

    cfg = _cfg(
        tmp_path, root_check="false", maximal_delay="30", software_root=str(tmp_path / "gone")
    )
    clock = FakeClock()
    ctx = Context.for_test(tmp_path, clock=clock)
    assert main(["node", "software", "--cfg", str(cfg)], ctx) == 1
    assert len(clock.sleeps) == 1 and 1 <= clock.sleeps[0] <= 30
    assert main(["node", "software", "--cfg", str(cfg), "--now"], ctx) == 1
    assert len(clock.sleeps) == 1
