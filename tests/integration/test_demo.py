"""The README demo, end to end: `python -m slapos.demo DIR`, twice, then --destroy.

Run as an unprivileged user (nobody, when the tests run as root), as the README promises;
and, as root, with real partition users (names of its own) in a network namespace that has
no route: the demo's build and deployment never leave the machine.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.common import REPO, as_user, demo_url, fetch, free_port, wait_for

#: in parallel runs (pytest-xdist), one worker runs every demo (here and test_readme.py): a
#: demo's master takes port 8080 when it finds it free, so two at once could both pick it
pytestmark = pytest.mark.xdist_group("demo")


def demo_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAPOS_")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    return env


def in_demo(
    argv: list[str],
    directory: Path,
    user: pwd.struct_passwd | None,
    prefix: tuple[str, ...] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`argv` (after `prefix`) as `user`, beside the demo `directory`, in its environment."""
    return subprocess.run(
        [*prefix, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=directory.parent,
        env=demo_env(directory.parent),
        stdin=subprocess.DEVNULL,
        check=False,
        **as_user(user),
    )


def run_demo(
    python: Path,
    directory: Path,
    user: pwd.struct_passwd | None,
    *extra: str,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    argv = [str(python), "-m", "slapos.demo", str(directory), *extra]
    return in_demo(argv, directory, user, prefix, timeout=600)


def says_hello(url: str) -> bool:
    """The demo's service answers at `url` with its page."""
    return "Hello from SlapOS!" in (fetch(url, timeout=10) or "")


def shutdown(
    python: Path, directory: Path, user: pwd.struct_passwd | None, prefix: tuple[str, ...] = ()
) -> None:
    cfg = directory / "etc" / "slapos.cfg"
    if not cfg.exists():
        return
    pid_file = directory / "srv" / "var" / "run" / "supervisord.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    argv = [str(python), "-m", "slapos", "node", "supervisorctl", "--cfg", str(cfg), "shutdown"]
    in_demo(argv, directory, user, prefix, timeout=60)
    if pid is not None:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "supervisord to stop")


def next_commands(stdout: str) -> list[list[str]]:
    """The commands the demo's summary suggests trying next."""
    block = stdout.split("Next commands", 1)[1].split("\nRun again", 1)[0]
    return [shlex.split(line) for line in block.splitlines()[1:] if line.startswith("  ")]


def check_demo(
    python: Path,
    directory: Path,
    user: pwd.struct_passwd | None,
    *extra: str,
    prefix: tuple[str, ...] = (),
) -> None:
    first = run_demo(python, directory, user, *extra, prefix=prefix)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Hello from SlapOS!" in first.stdout
    # request's report is for scripts: no "Connection parameters ... are:" over nothing
    assert "Connection parameters of instance are" not in first.stderr
    url = demo_url(first.stdout)
    if not prefix:  # (in a network namespace, its addresses are not ours)
        assert says_hello(url)
    # the summary: where the configuration is, and three commands that work as printed
    for name in ("slapos.cfg", "slapos-proxy.cfg", "slapos-client.cfg"):
        assert str(directory / "etc" / name) in first.stdout
        assert (directory / "etc" / name).exists()
    commands = next_commands(first.stdout)
    assert len(commands) == 3
    for argv in commands:
        done = in_demo(argv, directory, user, prefix)
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    assert f"{directory} --destroy" in first.stdout
    assert f"{directory} --stop" in first.stdout
    # a release of the user's own that fails to build does not fail the demo
    slapos = commands[0][0]
    client = str(directory / "etc" / "slapos-client.cfg")
    nowhere = str(directory / "nowhere.cfg")
    supplied = in_demo(
        [slapos, "supply", nowhere, "local_computer", "--cfg", client], directory, user, prefix
    )
    assert supplied.returncode == 0, supplied.stderr
    again = run_demo(python, directory, user, *extra, prefix=prefix)  # safe, keeps the service
    assert again.returncode == 0, again.stdout + again.stderr
    assert demo_url(again.stdout) == url
    assert "software releases: 1 up to date, 1 failed" in again.stderr  # not rebuilt
    # the demo stopped by hand (as the panel's Stop does): running it again starts it
    node_cfg = str(directory / "etc" / "slapos.cfg")
    release = str(directory / "software-release" / "software.cfg")
    for argv in (
        [slapos, "request", "demo", release, "--state", "stopped", "--cfg", client],
        [slapos, "node", "instance", "--cfg", node_cfg],
    ):
        done = in_demo(argv, directory, user, prefix)
        assert done.returncode in (0, 1), f"{argv}: {done.stdout}{done.stderr}"
    restarted = run_demo(python, directory, user, *extra, prefix=prefix)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "starting its service" not in restarted.stdout, restarted.stdout
    if not prefix:
        assert says_hello(url)
    # after everything stopped (a reboot), the demo brings the service back; here the
    # printed `node status` then launched supervisord again, without the partition's
    # service: the demo sees it at once (no wait for a page that cannot answer)
    shutdown(python, directory, user, prefix)
    status = in_demo(commands[2], directory, user, prefix)
    assert (
        "demo-web-on-watch" in status.stdout
        and "RUNNING" not in status.stdout.split("demo-web-on-watch", 1)[1].splitlines()[0]
    ), status.stdout
    third = run_demo(python, directory, user, *extra, prefix=prefix)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "starting its service" not in third.stdout, third.stdout
    if not prefix:
        assert says_hello(url)
    # --stop, as the summary says: supervisord (and the local master under it) stops
    pid = int((directory / "srv" / "var" / "run" / "supervisord.pid").read_text())
    stopped = run_demo(python, directory, user, "--stop", prefix=prefix)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "starts its supervisord and the local master again" in stopped.stdout
    assert not Path(f"/proc/{pid}").exists()


def test_demo_stop_refuses_what_is_not_a_demo(tmp_path, node_python):
    done = run_demo(node_python, tmp_path, None, "--stop")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"demo --stop failed: {tmp_path} is not a demo directory (no etc/slapos.cfg)"
    ]


def test_demo_without_root(open_dir, node_python):
    user = None
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        os.chown(open_dir, user.pw_uid, user.pw_gid)
    directory = open_dir / "demo"
    port = free_port()  # not 8080: a user's demo (or another test's) may hold it
    try:
        check_demo(node_python, directory, user, "--port", str(port))
        proxy_cfg = (directory / "etc" / "slapos-proxy.cfg").read_text()
        assert f"port = {port}\n" in proxy_cfg, proxy_cfg
        # unprivileged layout: nothing is owned by anybody else than the caller
        owner = user.pw_uid if user else os.geteuid()
        assert (directory / "srv" / "slappart0").stat().st_uid == owner
    finally:
        shutdown(node_python, directory, user)


@pytest.mark.root
def test_demo_as_root_offline_then_destroyed(open_dir, node_python):
    """Partition users of its own; a network namespace with only lo: no route anywhere."""
    base = f"tdm{secrets.token_hex(3)}"
    users = [f"{base}s", *(f"{base}u{i}" for i in range(3))]
    ns = f"tdemo{secrets.token_hex(3)}"
    inside = ("ip", "netns", "exec", ns)
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    directory = open_dir / "demo"
    try:
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        routes = subprocess.run(
            [*inside, "ip", "route"], capture_output=True, text=True, check=True
        )
        assert routes.stdout.strip() == ""  # nothing but the loopback
        port = str(free_port())  # (its namespace has its own ports, but as every test)
        options = ("--user-base-name", f"{base}u", "--software-user", users[0], "--port", port)
        check_demo(node_python, directory, None, *options, prefix=inside)
        assert (directory / "srv" / "slappart0").stat().st_uid == pwd.getpwnam(users[1]).pw_uid
        assert (directory / "soft").stat().st_uid == pwd.getpwnam(users[0]).pw_uid
        (directory / "notes.txt").write_text("the user's, not the demo's")
        gone = run_demo(node_python, directory, None, "--destroy", prefix=inside)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert [p.name for p in directory.iterdir()] == ["notes.txt"]  # only the demo's went
        assert not [u.pw_name for u in pwd.getpwall() if u.pw_name in users]
        assert not [g.gr_name for g in grp.getgrall() if g.gr_name in users]
    finally:
        shutdown(node_python, directory, None, inside)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        for name in users:
            subprocess.run(["userdel", name], capture_output=True, check=False)
            with contextlib.suppress(KeyError):
                grp.getgrnam(name)
                subprocess.run(["groupdel", name], capture_output=True, check=False)


@pytest.mark.root
def test_demo_as_root_in_a_closed_directory_says_why_in_one_line(open_dir, node_python):
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    done = run_demo(node_python, closed / "demo", None)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert f"cannot reach the demo directory {closed}/demo ({closed} is closed" in line
    assert line.endswith(f"chmod o+x {closed}")
    assert not (closed / "demo").exists()


@pytest.mark.root
def test_demo_as_root_with_slapos_in_a_closed_directory_says_why_in_one_line(open_dir, node_python):
    """A clone in root's home (mode 0700): its Python is out of the partition users' reach."""
    home = open_dir / "home"
    home.mkdir(mode=0o700)
    (home / "venv").symlink_to(node_python.parent.parent)  # the same virtualenv, behind `home`
    python = home / "venv" / "bin" / "python"
    done = run_demo(python, open_dir / "demo", None)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"who cannot reach {python} (and the slapos it runs) ({home} is closed" in line
    assert "run ./dev.sh demo, which installs slapos where they can read it" in line
    assert line.endswith(f"chmod o+x {home}")
    assert not (open_dir / "demo").exists()


@pytest.mark.root
def test_demo_as_root_refuses_users_of_another_demo_before_starting_anything(open_dir, node_python):
    """One root demo per machine: users of another demo are named, nothing is started."""
    tag = secrets.token_hex(3)
    base, software = f"sdu{tag}p", f"sdu{tag}s"
    other = open_dir / "other"
    (other / "etc").mkdir(parents=True)
    (other / "etc" / "slapos.cfg").write_text("[slapos]\n")
    subprocess.run(
        ["useradd", "-r", "-M", "-d", str(other / "srv" / "slappart0"), f"{base}0"], check=True
    )
    try:
        done = run_demo(
            node_python, open_dir / "demo", None, "--user-base-name", base,
            "--software-user", software,
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        [line] = done.stderr.strip().splitlines()
        assert f"one demo per machine: user {base}0 already exists" in line
        assert f"{other} --destroy" in line
        assert not (open_dir / "demo" / "etc").exists()  # no master, no supervisord started
    finally:
        shutdown(node_python, open_dir / "demo", None)
        subprocess.run(["userdel", f"{base}0"], check=False)
        for name in (software, *(f"{base}{i}" for i in range(3))):
            subprocess.run(["userdel", name], capture_output=True, check=False)
        for name in (software, *(f"{base}{i}" for i in range(3))):
            subprocess.run(["groupdel", name], capture_output=True, check=False)
