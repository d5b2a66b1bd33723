"""`slapos node software` end to end: real zc.buildout, a real master (ours and upstream's).

Every build runs the test releases of tests/data/sr (offline, about a second each). As
root, software_root belongs to a throwaway user and buildout runs as that user.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.common import wait_for


@pytest.fixture
def master(any_proxy, recording_master):  # type: ignore[no-untyped-def]
    """The proxy, through a relay that records the node's calls."""
    return recording_master(any_proxy)


@pytest.fixture
def node(master, software_node):  # type: ignore[no-untyped-def]
    return software_node(master)


def test_supplied_release_is_built_where_upstream_puts_it(node, master) -> None:  # type: ignore[no-untyped-def]
    url = str(node.source.path("success"))
    node.supply(url)
    result = node.run()
    assert result.returncode == 0, result.stderr
    reports = [(path.rsplit("/", 1)[-1], fields.get("url")) for path, fields in master.calls]
    assert [r for r in reports if r[1] == url and r[0] != "supplySupply"] == [
        ("buildingSoftwareRelease", url),
        ("availableSoftwareRelease", url),
    ]
    sr = node.sr_path(url)
    assert sr.name == __import__("hashlib").md5(url.encode()).hexdigest()
    assert (sr / ".completed").is_file()
    assert (sr / "buildout.cfg").read_text() == (
        f"[buildout]\nextends = {url}\nshared-part-list = \nbuild-time-part-list = \n\n"
    )
    assert (sr / "extends-cache").is_dir()
    assert (sr / "bin" / "buildout").is_file()
    assert not (sr / "bin" / "buildout-bootstrap-skipped").exists()
    assert (sr / "parts" / "hello" / "hello.txt").read_text().startswith("hello from")
    assert (sr / "instance.cfg").is_file()
    assert "Installing software release" in result.stderr
    assert "Finished software releases." in result.stderr
    if node.user:
        assert sr.owner() == node.user
        assert (sr / "parts" / "hello" / "hello.txt").owner() == node.user
        assert (sr / ".installed.cfg").owner() == node.user


def test_second_run_does_no_build(node) -> None:  # type: ignore[no-untyped-def]
    url = str(node.source.path("success"))
    node.supply(url)
    assert node.run().returncode == 0
    completed = (node.sr_path(url) / ".completed").stat().st_mtime_ns
    log_before = node.log_path(url).stat().st_mtime_ns
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert "Installing software release" not in result.stderr
    assert (node.sr_path(url) / ".completed").stat().st_mtime_ns == completed
    assert node.log_path(url).stat().st_mtime_ns == log_before
    forced = node.run("--force")
    assert forced.returncode == 0, forced.stderr
    assert "Installing software release" in forced.stderr
    assert (node.sr_path(url) / ".completed").stat().st_mtime_ns != completed


def test_failing_build_reports_error_and_is_retried(node, master) -> None:  # type: ignore[no-untyped-def]
    good, bad = str(node.source.path("success")), str(node.source.path("fail"))
    node.supply(bad)
    node.supply(good)
    result = node.run()
    assert result.returncode == 1
    [error] = master.posted("softwareReleaseError")
    assert error["url"] == bad and error["computer_id"] == node.computer_id
    assert error["error_log"].startswith("Failed to run buildout profile in directory")
    assert "Error: the broken part failed on purpose" in error["error_log"]
    assert [f["url"] for f in master.posted("availableSoftwareRelease")] == [good]
    assert "the broken part failed on purpose" in result.stderr
    assert str(node.log_path(bad)) in result.stderr
    assert "Error: the broken part failed on purpose" in node.log_path(bad).read_text()
    assert not (node.sr_path(bad) / ".completed").exists()
    assert (node.sr_path(good) / ".completed").exists()  # the other release still built
    again = node.run()
    assert again.returncode == 1
    assert f"Installing software release {bad}" in again.stderr
    assert f"Installing software release {good}" not in again.stderr


def test_extends_another_release(node) -> None:  # type: ignore[no-untyped-def]
    url = node.source.file_url("extends")
    node.supply(url)
    result = node.run()
    assert result.returncode == 0, result.stderr
    sr = node.sr_path(url)
    assert (sr / "parts" / "greeting" / "greeting.txt").read_text().strip() == (
        f"greeting next to {sr}/parts/hello"
    )


def test_destroyed_release_is_removed(node, master) -> None:  # type: ignore[no-untyped-def]
    url = str(node.source.path("success"))
    node.supply(url)
    assert node.run().returncode == 0
    sr = node.sr_path(url)
    (sr / "parts" / "hello").chmod(0o500)  # read-only trees are removed too
    node.supply(url, "destroyed")
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert not sr.exists()
    assert [f["url"] for f in master.posted("destroyedSoftwareRelease")] == [url]
    # the master forgets a release once told it is destroyed: nothing left to do
    again = node.run()
    assert again.returncode == 0, again.stderr
    assert "Destroying" not in again.stderr


def test_concurrent_run_exits_10(node) -> None:  # type: ignore[no-untyped-def]
    url = str(node.source.path("slow"))
    node.supply(url)
    first = subprocess.Popen(
        node.command(),
        env=node.environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(node.pidfile.exists, 60, "the first run to take its lock")
        second = node.run()
        assert second.returncode == 10, second.stderr
        assert "already running" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGTERM)  # SIGTERM: slapos kills its build too
        first.wait(30)


def test_http_release_and_unreachable_ones(node, serve_directory) -> None:  # type: ignore[no-untyped-def]
    server = serve_directory(node.source.root)
    good = f"{server.url}/extends/software.cfg"
    missing = f"{server.url}/nothing/software.cfg"
    from tests.fixtures.common import free_port

    unreachable = f"http://127.0.0.1:{free_port()}/software.cfg"
    for url in (missing, unreachable, good):
        node.supply(url)
    started = time.monotonic()
    result = node.run()
    assert time.monotonic() - started < 120
    assert result.returncode == 1
    assert (node.sr_path(good) / ".completed").exists()
    assert not (node.sr_path(missing) / ".completed").exists()
    lines = [line for line in result.stderr.splitlines() if "failed:" in line]
    assert any(missing in line and "404" in line for line in lines), result.stderr
    assert any(unreachable in line for line in lines), result.stderr


def test_malformed_profile(node) -> None:  # type: ignore[no-untyped-def]
    url = str(node.source.path("malformed"))
    node.supply(url)
    result = node.run()
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "failed:" in line]
    assert "section" in line.lower()
    # fixed by its author: the next run recovers without manual clean-up
    Path(url).write_text(node.source.path("success").read_text())
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert (node.sr_path(url) / ".completed").exists()


# ---- the same release installed by upstream's 1.26.1 node -------------------------------

_EXPOSE_PYENV = (
    # Upstream's interpreter lives under /root (mode 0700) here; its build runs as the
    # software user. In a private mount namespace, /root becomes a 0755 tmpfs holding only
    # .pyenv, so that user can run it; nothing changes outside this process tree.
    'side=$(mktemp -d) && mount --bind /root/.pyenv "$side" && '
    "mount -t tmpfs -o mode=755 tmpfs /root && mkdir /root/.pyenv && "
    'mount --move "$side" /root/.pyenv && rmdir "$side" && exec "$@"'
)


def _upstream_node_software(upstream, node):  # type: ignore[no-untyped-def]
    argv = [str(upstream.slapos), "node", "software", "--cfg", str(node.config), "--now"]
    if os.geteuid() == 0 and str(upstream.python.resolve()).startswith("/root/"):
        argv = ["unshare", "-m", "sh", "-c", _EXPOSE_PYENV, "sh", *argv]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        env=node.environ(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _listing(root: Path) -> dict[str, str]:
    """Relative path -> kind, for the files a user would look at (not eggs' internals)."""
    result = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] in ("eggs", "develop-eggs") and len(rel.parts) > 1:
            continue
        result[str(rel)] = "dir" if p.is_dir() else "file"
    return result


@pytest.mark.upstream
def test_upstream_installs_the_same_release_identically(proxy, software_node, upstream) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = software_node(proxy), software_node(proxy)
    url = str(ours.source.path("success"))
    ours.supply(url)
    mine = ours.run()
    assert mine.returncode == 0, mine.stderr
    other = _upstream_node_software(upstream, theirs)
    assert other.returncode == 0, other.stdout + other.stderr
    a, b = ours.sr_path(url), theirs.sr_path(url)
    assert a.name == b.name
    assert _listing(a) == _listing(b)
    for name in ("buildout.cfg", "instance.cfg"):
        assert (a / name).read_text().replace(str(a), "SR") == (b / name).read_text().replace(
            str(b), "SR"
        )
    assert (a / ".completed").is_file() and (b / ".completed").is_file()
    assert (a / "bin" / "buildout").stat().st_mode == (b / "bin" / "buildout").stat().st_mode
    if ours.user:
        assert (b / "parts").owner() == theirs.user
