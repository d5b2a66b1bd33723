"""slapos.grid.buildout: argv and environment as data, run through a fake Runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slapos.grid import buildout
from slapos.system import Completed
from tests.fakes import Call, FakeRunner
from tests.fakes.buildout import fake_buildout


def test_clean_environment_drops_what_upstream_drops() -> None:
    env = buildout.clean_environment(
        {
            "PATH": "/bin",
            "PYTHONPATH": "/x",
            "PYTHONHOME": "/y",
            "LANG": "fr_FR.UTF-8",
            "LC_ALL": "C",
            "LC_TIME": "C",
            "TMPDIR": "/t",
            "LOGNAME": "me",
            "KEEP": "1",
        },
        Path("/srv/sr"),
    )
    assert env == {
        "PATH": "/bin",
        "KEEP": "1",
        "PYTHONNOUSERSITE": "true",
        "HOME": "/srv/sr",
    }


def test_clean_environment_has_a_path() -> None:
    assert "PATH" in buildout.clean_environment({}, Path("/h"))


def test_bootstrap_command_uses_our_python_and_absolute_sys_path(tmp_path: Path) -> None:
    cmd = buildout.bootstrap_command(
        tmp_path,
        argv_extra=["-N", "-c", "buildout.cfg"],
        environ={"PATH": "/bin"},
        python="/py",
        sys_path=["", ".", "/lib/site-packages"],
    )
    assert cmd.argv[:3] == ("/py", "-S", "-c")
    program = cmd.argv[3]
    assert "sys.path[:] = ['/lib/site-packages']" in program
    assert "['-N', '-c', 'buildout.cfg', 'bootstrap']" in program
    assert cmd.cwd == tmp_path
    assert cmd.umask == 0o027
    assert cmd.env["PYTHONNOUSERSITE"] == "true"
    assert cmd.user is not None and cmd.user.uid == tmp_path.stat().st_uid


def test_bootstrap_command_with_configured_buildout_script(tmp_path: Path) -> None:
    cmd = buildout.bootstrap_command(
        tmp_path, argv_extra=["-N"], environ={}, python="/py", buildout_script="/opt/buildout"
    )
    assert cmd.argv == ("/py", "-S", "/opt/buildout", "-N", "bootstrap")


def test_buildout_command_calls_the_shebang_interpreter(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "buildout").write_text("#!/very/long/python -S\nimport x\n")
    cmd = buildout.buildout_command(tmp_path, argv_extra=["-N", "-c", "b.cfg"], environ={})
    assert cmd.argv == (
        "/very/long/python",
        "-S",
        str(tmp_path / "bin" / "buildout"),
        "-U",
        "-N",
        "-c",
        "b.cfg",
    )
    assert cmd.env["HOME"] == str(tmp_path)  # HOME is the directory buildout runs in
    assert cmd.capture


def test_buildout_command_debug_is_uncaptured(tmp_path: Path) -> None:
    cmd = buildout.buildout_command(tmp_path, environ={}, debug=True)
    assert cmd.argv == (str(tmp_path / "bin" / "buildout"), "-D", "-U")
    assert not cmd.capture


def test_execute_logs_every_line_and_calls_back(tmp_path: Path) -> None:
    seen: list[str] = []
    runner = FakeRunner(default=(0, "Installing a.\ndone\n"))
    log = tmp_path / "log" / "b.log"
    cmd = buildout.buildout_command(tmp_path, environ={})
    completed = buildout.execute(cmd, runner=runner, log_path=log, on_line=seen.append, timeout=9)
    assert completed.ok
    assert seen == ["Installing a.", "done"]
    text = log.read_text()
    assert text.startswith("$ ") and text.endswith("Installing a.\ndone\n")
    assert runner.calls[0].timeout == 9
    assert runner.calls[0].umask == 0o027


def test_execute_failure_is_one_line_with_the_log_path(tmp_path: Path) -> None:
    output = "Installing broken.\nWhile:\n  Installing broken.\nError: no such egg\n"
    runner = FakeRunner(default=(1, output))
    log = tmp_path / "b.log"
    with pytest.raises(buildout.BuildoutFailed) as info:
        buildout.execute(
            buildout.buildout_command(tmp_path, environ={}), runner=runner, log_path=log
        )
    exc = info.value
    assert str(exc) == f"buildout failed in {tmp_path}: no such egg (full log: {log})"
    assert "\n" not in str(exc)
    assert exc.reason == "no such egg"
    assert exc.report().startswith(f"Failed to run buildout profile in directory '{tmp_path}':\n")
    assert "Error: no such egg" in exc.report()
    assert log.read_text().endswith("[slapos] exit status 1\n")


def test_bootstrap_and_run_bootstraps_a_new_directory(tmp_path: Path) -> None:
    runner = FakeRunner(default=fake_buildout)
    buildout.bootstrap_and_run(tmp_path, runner=runner, environ={}, argv_extra=["-N"])
    assert len(runner.calls) == 2
    assert runner.calls[0].argv[-1].endswith("zc.buildout.buildout.main())")
    assert runner.calls[1].argv[2:] == (str(tmp_path / "bin" / "buildout"), "-U", "-N")
    assert not (tmp_path / "bin" / buildout.BOOTSTRAP_SKIPPED).exists()


def test_bootstrap_is_skipped_when_bin_buildout_exists(tmp_path: Path) -> None:
    fake_buildout(Call(("bootstrap",), tmp_path))
    runner = FakeRunner(default=fake_buildout)
    buildout.bootstrap_and_run(tmp_path, runner=runner, environ={})
    assert len(runner.calls) == 1
    assert not (tmp_path / "bin" / buildout.BOOTSTRAP_SKIPPED).exists()


def test_a_failed_run_without_bootstrap_bootstraps_next_time(tmp_path: Path) -> None:
    fake_buildout(Call(("bootstrap",), tmp_path))
    failing = FakeRunner(default=(1, "Error: boom\n"))
    with pytest.raises(buildout.BuildoutFailed):
        buildout.bootstrap_and_run(tmp_path, runner=failing, environ={})
    assert (tmp_path / "bin" / buildout.BOOTSTRAP_SKIPPED).exists()
    runner = FakeRunner(default=fake_buildout)
    buildout.bootstrap_and_run(tmp_path, runner=runner, environ={})
    assert len(runner.calls) == 2  # bootstrap again, then buildout
    assert not (tmp_path / "bin" / buildout.BOOTSTRAP_SKIPPED).exists()


def test_timeout_is_reported(tmp_path: Path) -> None:
    def timing_out(call: Call) -> Completed:
        return Completed(call.argv, -9, "Installing slow.\n", timed_out=True)

    with pytest.raises(buildout.BuildoutFailed) as info:
        command = buildout.buildout_command(tmp_path, environ={})
        buildout.execute(command, runner=FakeRunner(default=timing_out), timeout=30)
    assert info.value.reason == "buildout timed out after 30 s"


def test_home_of_owner_is_the_owners_home(tmp_path: Path) -> None:
    import pwd

    assert buildout.home_of_owner(tmp_path) == Path(pwd.getpwuid(os.getuid()).pw_dir)


@pytest.mark.root
def test_home_of_owner_falls_back_to_the_directory(tmp_path: Path) -> None:
    import pwd

    uid = next(u for u in range(424242, 434242) if not _has_user(pwd, u))
    owned = tmp_path / "owned-by-nobody-known"
    owned.mkdir()
    os.chown(owned, uid, -1)
    assert buildout.home_of_owner(owned) == owned


def _has_user(pwd, uid: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
