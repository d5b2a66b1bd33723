"""README.rst's two commands, exactly as written, in a fresh clone, as CI runs them.

`./dev.sh demo` then `./dev.sh test`: no stdin, CI=true, and on PATH a pyenv-like shim
directory whose `python3.12` fails as pyenv's does when no 3.12 is selected (exit 127), so
that nothing may take such a shim at its word. The clone is of this checkout's HEAD
(uncommitted changes are not in it).

`./dev.sh test` runs the whole suite, this test included: run in here it would recurse.
It is run with arguments selecting a small, fast part of the suite instead; the command
line, the set-up it does and its exit status are the same.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import REPO, demo_url

#: with test_demo.py's demos in one worker of a parallel run (pytest-xdist): a demo's master
#: takes port 8080 when free, and the README demo as root creates DEMO_USERS
pytestmark = pytest.mark.xdist_group("demo")

DEMO_USERS = ("slapsoft", "slapuser0", "slapuser1", "slapuser2")
PYENV_SHIM = """#!/bin/sh
echo "pyenv: $(basename "$0"): command not found" >&2
echo "The '$(basename "$0")' command exists in these Python versions: 3.12.1" >&2
exit 127
"""


def readme_commands() -> list[str]:
    """The commands of README.rst's first code block."""
    text = (REPO / "README.rst").read_text()
    block = text.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    """A fresh clone of this checkout, where partition users can reach it."""
    path = Path("/tmp") / f"sreadme{secrets.token_hex(3)}"
    subprocess.run(
        ["git", "clone", "-q", str(REPO), str(path)], check=True, capture_output=True, timeout=120
    )
    path.chmod(0o755)
    try:
        yield path
    finally:
        if (path / "demo").exists():
            subprocess.run(
                [str(path / ".venv" / "bin" / "python"), "-m", "slapos.demo", "demo", "--destroy"],
                cwd=path, capture_output=True, timeout=120, check=False,
            )  # fmt: skip
        shutil.rmtree(path, ignore_errors=True)


def as_ci(clone: Path, tmp_path: Path) -> dict[str, str]:
    shims = tmp_path / "pyenv-shims"
    shims.mkdir()
    for name in ("python3.12", "python3.13"):
        shim = shims / name
        shim.write_text(PYENV_SHIM)
        shim.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLAPOS_", "PYTEST_"))}
    env.update(CI="true", PATH=f"{shims}:{env.get('PATH', '/usr/bin:/bin')}")
    return env


def run(argv: list[str], clone: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=clone, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip


def test_the_readme_commands_work_the_first_time(clone, tmp_path):
    assert readme_commands() == ["./dev.sh demo", "./dev.sh test"]
    if os.geteuid() == 0:
        taken = [u.pw_name for u in pwd.getpwall() if u.pw_name in DEMO_USERS]
        assert not taken, (
            f"users {taken} exist on this host (a root demo?): the README demo run as root "
            "creates them; remove that demo first with ./dev.sh demo --destroy"
        )
    env = as_ci(clone, tmp_path)
    demo = run(["./dev.sh", "demo"], clone, env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    url = demo_url(demo.stdout)
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert b"Hello from SlapOS!" in answer.read()
    assert f"Remove everything: {clone}/dev.sh demo {clone}/demo --destroy" in demo.stdout
    again = run(["./dev.sh", "demo"], clone, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert demo_url(again.stdout) == url

    # `./dev.sh test`, on a small part of the suite (the whole of it would run this test)
    tests = run(["./dev.sh", "test", "-q", "-p", "no:cacheprovider",
                 "tests/unit/cli/test_tree.py"], clone, env)  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert re.search(r"\d+ passed", tests.stdout)
    assert "skipped" not in tests.stdout

    gone = run(["./dev.sh", "demo", "--destroy"], clone, env)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not (clone / "demo").exists()
    assert not [u.pw_name for u in pwd.getpwall() if u.pw_name in DEMO_USERS]


@pytest.mark.root
def test_demo_from_a_clone_in_a_closed_home(tmp_path):
    """A root newcomer's clone in root's home (mode 0700): the partition users cannot enter
    it, so ./dev.sh demo installs slapos for them into a virtualenv they can read."""
    token = secrets.token_hex(3)
    home = Path("/tmp") / f"shome{token}"
    home.mkdir(mode=0o700)
    outside = Path("/tmp") / f"sdemo{token}"
    outside.mkdir(mode=0o755)
    venv = outside / "venv"
    directory = outside / "demo"
    base = f"tcc{token}"
    users = [f"{base}s", *(f"{base}u{i}" for i in range(3))]
    clone = home / "slapos"
    subprocess.run(
        ["git", "clone", "-q", str(REPO), str(clone)], check=True, capture_output=True, timeout=120
    )
    env = {**as_ci(clone, tmp_path), "SLAPOS_DEMO_VENV": str(venv)}
    try:
        demo = run(["./dev.sh", "demo", str(directory), "--user-base-name", f"{base}u",
                    "--software-user", users[0]], clone, env)  # fmt: skip
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert f"dev.sh: {clone} is closed to other users" in demo.stderr
        url = demo_url(demo.stdout)
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert b"Hello from SlapOS!" in answer.read()
        assert f"  {venv}/bin/slapos service list" in demo.stdout
        assert not (clone / ".venv").exists()  # nothing the partition users would need there
        assert (venv / ".slapos-demo-dirs").read_text() == f"{directory}\n"
        # DIR after the option (the order the summary does not print) works the same; the
        # virtualenv made for the demo goes with it, the clone stays as it was
        gone = run(["./dev.sh", "demo", "--destroy", str(directory)], clone, env)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert not [u.pw_name for u in pwd.getpwall() if u.pw_name in users]
        assert not directory.exists() and not venv.exists()
        assert f"dev.sh: removing {venv} (the demo's Python; no demo uses it now)" in gone.stderr
    finally:
        if (directory / "etc").exists():
            run([str(venv / "bin" / "python"), "-m", "slapos.demo", str(directory), "--destroy"],
                Path("/"), env)  # fmt: skip
        for name in users:
            subprocess.run(["userdel", name], capture_output=True, check=False)
            subprocess.run(["groupdel", name], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)


def test_dev_sh_names_an_unknown_command():
    done = subprocess.run(
        ["sh", str(REPO / "dev.sh"), "dmeo"], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "dev.sh: unknown command 'dmeo'"
    assert "./dev.sh demo [DIR]" in done.stdout  # then the usage
    helped = subprocess.run(
        ["sh", str(REPO / "dev.sh"), "help"], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert helped.returncode == 0 and helped.stderr == "" and "./dev.sh demo" in helped.stdout


def test_dev_sh_demo_takes_dir_before_or_after_the_option(tmp_path):
    """`./dev.sh demo --destroy DIR` as `./dev.sh demo DIR --destroy`; anything else is one
    usage error. A relative DIR is the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLAPOS_", "PYTEST_"))}
    env["SLAPOS_DEMO_VENV"] = str(tmp_path / "no-venv")  # never the machine's

    def dev_sh(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(REPO / "dev.sh"), "demo", *argv], capture_output=True, text=True,
            timeout=300, stdin=subprocess.DEVNULL, check=False, cwd=tmp_path, env=env,
        )  # fmt: skip

    for argv in (["--destroy", "gone"], ["gone", "--destroy"], ["--stop", "gone"]):
        done = dev_sh(*argv)
        if argv[0] == "--stop":
            assert done.returncode == 1, done.stderr
            assert done.stderr.splitlines()[-1] == (
                f"demo --stop failed: {tmp_path}/gone is not a demo directory (no etc/slapos.cfg)"
            )
        else:
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout == f"nothing to remove: {tmp_path}/gone does not exist\n"
    done = dev_sh("one", "two", "--destroy")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"{REPO}/dev.sh demo: error: one DIR only, got 2: one two"
    )
    assert not (tmp_path / "no-venv").exists()
