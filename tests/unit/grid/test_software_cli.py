"""`slapos node software` in process: exit codes of the paths that never reach buildout."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.parametrize("command", ["software", "instance", "report"])
def test_a_lock_file_that_cannot_be_written_is_one_line_exit_1(
    tmp_path: Path, command: str
) -> None:
    """/opt/slapos for a user who is not root, say (here: beneath a regular file)."""
    (tmp_path / "a-file").write_text("")
    pidfile = tmp_path / "a-file" / "lock.pid"
    cfg = _cfg(tmp_path, root_check="false", **{f"pidfile_{command}": str(pidfile)})
    ctx = Context.for_test(tmp_path)
    assert main(["node", command, "--cfg", str(cfg), "--now"], ctx) == 1
    [line] = ctx.stderr.getvalue().strip().splitlines()
    assert line.endswith(
        f"ERROR cannot write the lock file {pidfile}: File exists: {tmp_path}/a-file ([slapos] "
        "pidfile_software"
        " / pidfile_instance / pidfile_report, else --pidfile, chooses another)"
    )


@pytest.mark.parametrize("command", ["instance", "report"])
def test_an_instance_root_supervisord_cannot_use_is_one_line_exit_1(
    tmp_path: Path, command: str
) -> None:
    """A read-only instance root, or one of another user (here: its var/ is a file)."""
    cfg = _cfg(tmp_path, root_check="false")
    (tmp_path / "inst" / "var").write_text("")
    ctx = Context.for_test(tmp_path)
    argv = ["node", command, "--cfg", str(cfg), "--now", "--pidfile", str(tmp_path / "x.pid")]
    assert main(argv, ctx) == 1
    [line] = ctx.stderr.getvalue().strip().splitlines()
    assert (
        f"ERROR cannot write supervisord's files in instance root {tmp_path}/inst: File exists: "
        f"{tmp_path}/inst/var (run as the owner of instance_root, or fix [slapos] instance_root)"
    ) in line


@pytest.mark.parametrize(
    ("command", "key"),
    [("software", "software_root"), ("instance", "instance_root"), ("report", "instance_root")],
)
def test_dry_run_with_a_missing_root_fails_as_a_real_run_does(
    tmp_path: Path, command: str, key: str
) -> None:
    """Not "a real run would change something (exit 4)": the real run exits 1 there."""
    missing = tmp_path / "missing"
    cfg = _cfg(tmp_path, **{key: str(missing)})
    ctx = Context.for_test(tmp_path, euid=1000)  # a plan needs no root
    assert main(["node", command, "--cfg", str(cfg), "--dry-run"], ctx) == 1
    [line] = ctx.stderr.getvalue().strip().splitlines()
    assert line.endswith(
        f"ERROR {key} {missing} does not exist or is not a directory (create it, or fix "
        f"[slapos] {key}): a real run fails there too"
    )
    assert ctx.stdout.getvalue() == ""


@pytest.mark.parametrize("command", ["software", "instance", "report"])
@pytest.mark.parametrize("option", ["--maximal-delay", "--promise-timeout", "--partition-timeout"])
def test_negative_seconds_are_a_usage_error(tmp_path: Path, command: str, option: str) -> None:
    ctx = Context.for_test(tmp_path)
    argv = ["node", command, "--cfg", str(_cfg(tmp_path)), "--now", option, "-3"]
    assert main(argv, ctx) == 2
    assert ctx.stderr.getvalue().rstrip().endswith("expected a whole number, 0 or more, got '-3'")
