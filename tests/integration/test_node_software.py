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


def _master_log(node) -> str:  # type: ignore[no-untyped-def]
    return ""


@pytest.fixture
def node(any_proxy, software_node):  # type: ignore[no-untyped-def]
    return software_node(any_proxy)


def test_supplied_release_is_built_where_upstream_puts_it(node) -> None:  # type: ignore[no-untyped-def]
    url = str(node.source.path("success"))
    node.supply(url)
    result = node.run()
    assert result.returncode == 0, result.stderr
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


def test_failing_build_reports_error_and_is_retried(node) -> None:  # type: ignore[no-untyped-def]
    good, bad = str(node.source.path("success")), str(node.source.path("fail"))
    node.supply(bad)
    node.supply(good)
    result = node.run()
    assert result.returncode == 1
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


def test_destroyed_release_is_removed(node) -> None:  # type: ignore[no-untyped-def]
    url = str(node.source.path("success"))
    node.supply(url)
    assert node.run().returncode == 0
    sr = node.sr_path(url)
    (sr / "parts" / "hello").chmod(0o500)  # read-only trees are removed too
    node.supply(url, "destroyed")
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert not sr.exists()


def test_concurrent_run_exits_10(node) -> None:  # type: ignore[no-untyped-def]
    url = str(node.source.path("slow"))
    node.supply(url)
    first = subprocess.Popen(
        node.command(), env=node.environ(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, start_new_session=True,
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
