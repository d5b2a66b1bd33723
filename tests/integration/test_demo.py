"""The README demo, end to end: `python -m slapos.demo DIR`, twice.

Run as an unprivileged user (nobody, when the tests run as root), as the README promises;
and, as root, with real partition users.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import REPO, wait_for

URL = re.compile(r"^Demo service: (http://\S+)$", re.M)


def demo_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAPOS_")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    return env


def run_demo(
    python: Path,
    directory: Path,
    user: pwd.struct_passwd | None,
) -> subprocess.CompletedProcess[str]:
    ids = {}
    if user is not None:
        ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.run(
        [str(python), "-m", "slapos.demo", str(directory)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=directory.parent,
        env=demo_env(directory.parent),
        stdin=subprocess.DEVNULL,
        check=False,
        **ids,
    )


def shutdown(python: Path, directory: Path, user: pwd.struct_passwd | None) -> None:
    cfg = directory / "etc" / "slapos.cfg"
    if not cfg.exists():
        return
    ids = {}
    if user is not None:
        ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    pid_file = directory / "srv" / "var" / "run" / "supervisord.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    subprocess.run(
        [str(python), "-m", "slapos", "node", "supervisorctl", "--cfg", str(cfg), "shutdown"],
        capture_output=True,
        timeout=60,
        env=demo_env(directory.parent),
        check=False,
        **ids,
    )
    if pid is not None:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "supervisord to stop")


def check_demo(python: Path, directory: Path, user: pwd.struct_passwd | None) -> None:
    first = run_demo(python, directory, user)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Hello from SlapOS!" in first.stdout
    url = URL.search(first.stdout).group(1)
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert b"Hello from SlapOS!" in answer.read()
    again = run_demo(python, directory, user)  # re-running is safe and keeps the service
    assert again.returncode == 0, again.stdout + again.stderr
    assert URL.search(again.stdout).group(1) == url
    for name in ("slapos.cfg", "slapos-proxy.cfg", "slapos-client.cfg"):
        assert (directory / "etc" / name).exists()
    # after everything stopped (a reboot), the demo brings the service back
    shutdown(python, directory, user)
    third = run_demo(python, directory, user)
    assert third.returncode == 0, third.stdout + third.stderr
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert b"Hello from SlapOS!" in answer.read()


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A short, world-traversable directory (supervisord's socket path is limited)."""
    base = Path("/tmp") / f"sdemo{os.getpid()}{tmp_path.name[-6:]}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_demo_without_root(workdir, node_python):
    user = None
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        os.chown(workdir, user.pw_uid, user.pw_gid)
    directory = workdir / "demo"
    try:
        check_demo(node_python, directory, user)
        # unprivileged layout: nothing is owned by anybody else than the caller
        owner = user.pw_uid if user else os.geteuid()
        assert (directory / "srv" / "slappart0").stat().st_uid == owner
    finally:
        shutdown(node_python, directory, user)


DEMO_USERS = ("slapsoft", "slapuser0", "slapuser1", "slapuser2")


@pytest.mark.root
def test_demo_as_root(workdir, node_python):
    existing = [u.pw_name for u in pwd.getpwall() if u.pw_name in DEMO_USERS]
    if existing:
        pytest.skip(f"users {existing} exist on this host: not touching them")
    directory = workdir / "demo"
    try:
        check_demo(node_python, directory, None)
        user = pwd.getpwnam("slapuser0")
        assert (directory / "srv" / "slappart0").stat().st_uid == user.pw_uid
    finally:
        shutdown(node_python, directory, None)
        for name in DEMO_USERS:
            subprocess.run(["userdel", name], capture_output=True, check=False)
            with contextlib.suppress(KeyError):
                grp.getgrnam(name)
                subprocess.run(["groupdel", name], capture_output=True, check=False)
