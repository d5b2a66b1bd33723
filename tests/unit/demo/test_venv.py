"""dev.sh's virtualenv for the demo's Python knows which demos use it: --destroy of the last
one leaves it unused (dev.sh then removes it), of another keeps it."""

from __future__ import annotations

import io
from pathlib import Path

from slapos.demo import venv
from slapos.demo.teardown import destroy
from tests.fakes import FakeRunner


def demo_dir(path: Path) -> Path:
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "slapos.cfg").write_text("[slapos]\n")
    return path


def test_users_recorded_and_forgotten(tmp_path: Path) -> None:
    env = tmp_path / "venv"
    env.mkdir()
    assert venv.users(env) == []
    one, two = demo_dir(tmp_path / "one"), demo_dir(tmp_path / "two")
    venv.record_user(env, one)
    venv.record_user(env, two)
    venv.record_user(env, one)  # run again: listed once
    assert venv.users(env) == [two, one]
    assert venv.forget_user(env, one) == [two]
    (two / "etc" / "slapos.cfg").unlink()  # removed by hand: no demo there any more
    assert venv.forget_user(env, tmp_path / "other") == []
    assert (env / venv.USERS_FILE).read_text() == ""  # what dev.sh reads: remove it


def test_destroy_tells_the_virtualenv(tmp_path: Path) -> None:
    env = tmp_path / "venv"
    env.mkdir()
    one, two = demo_dir(tmp_path / "one"), demo_dir(tmp_path / "two")
    venv.record_user(env, one)
    venv.record_user(env, two)
    out = io.StringIO()
    destroy(one, out, FakeRunner(), env)  # (no user has a home in there: nothing is run)
    assert not one.exists()
    assert out.getvalue().endswith(f"Keeping {env}: the Python of the demo in {two}\n")
    out = io.StringIO()
    destroy(two, out, FakeRunner(), env)
    assert venv.users(env) == [] and (env / venv.USERS_FILE).read_text() == ""
    assert out.getvalue().endswith("The demo is gone.\n")
