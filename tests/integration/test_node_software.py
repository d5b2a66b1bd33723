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
def master(proxy, recording_master):  # type: ignore[no-untyped-def]
    """Our proxy, through a relay that records the node's calls."""
    return recording_master(proxy)


@pytest.fixture
def node(master, software_node):  # type: ignore[no-untyped-def]
    return software_node(master)


@pytest.fixture
def any_master(any_proxy, recording_master):  # type: ignore[no-untyped-def]
    """Our proxy and upstream's (each test twice), through a recording relay."""
    return recording_master(any_proxy)


@pytest.fixture
def any_node(any_master, software_node):  # type: ignore[no-untyped-def]
    return software_node(any_master)


def test_supplied_release_is_built_where_upstream_puts_it(any_node, any_master) -> None:  # type: ignore[no-untyped-def]
    url = str(any_node.source.path("success"))
    any_node.supply(url)
    result = any_node.run()
    assert result.returncode == 0, result.stderr
    reports = [(path.rsplit("/", 1)[-1], fields.get("url")) for _, path, fields in any_master.calls]
    assert [r for r in reports if r[1] == url and r[0] != "supplySupply"] == [
        ("buildingSoftwareRelease", url),
        ("availableSoftwareRelease", url),
    ]
    sr = any_node.sr_path(url)
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
    # as upstream, the node's supervisord configuration is written (not launched)
    assert (any_node.instance_root / "etc" / "supervisord.conf").is_file()
    if any_node.user:
        assert sr.owner() == any_node.user
        assert (sr / "parts" / "hello" / "hello.txt").owner() == any_node.user
        assert (sr / ".installed.cfg").owner() == any_node.user


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


def test_failing_build_reports_error_and_is_retried(any_node, any_master) -> None:  # type: ignore[no-untyped-def]
    good, bad = str(any_node.source.path("success")), str(any_node.source.path("fail"))
    any_node.supply(bad)
    any_node.supply(good)
    result = any_node.run()
    assert result.returncode == 1
    [error] = any_master.posted("softwareReleaseError")
    assert error["url"] == bad and error["computer_id"] == any_node.computer_id
    assert error["error_log"].startswith("Failed to run buildout profile in directory")
    assert "Error: the broken part failed on purpose" in error["error_log"]
    assert [f["url"] for f in any_master.posted("availableSoftwareRelease")] == [good]
    assert "the broken part failed on purpose" in result.stderr
    assert str(any_node.log_path(bad)) in result.stderr
    assert "Error: the broken part failed on purpose" in any_node.log_path(bad).read_text()
    assert not (any_node.sr_path(bad) / ".completed").exists()
    assert (any_node.sr_path(good) / ".completed").exists()  # the other release still built
    again = any_node.run()
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


def test_destroyed_release_is_removed(any_node, any_master) -> None:  # type: ignore[no-untyped-def]
    url = str(any_node.source.path("success"))
    any_node.supply(url)
    assert any_node.run().returncode == 0
    sr = any_node.sr_path(url)
    (sr / "parts" / "hello").chmod(0o500)  # read-only trees are removed too
    any_node.supply(url, "destroyed")
    result = any_node.run()
    assert result.returncode == 0, result.stderr
    assert not sr.exists()
    assert [f["url"] for f in any_master.posted("destroyedSoftwareRelease")] == [url]
    # the master forgets a release once told it is destroyed: nothing left to do
    again = any_node.run()
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
        sr = node.sr_path(url)
        wait_for(lambda: _buildout_pids(sr), 60, "the build to start")
        first.send_signal(signal.SIGTERM)  # SIGTERM: slapos kills its build too
        assert first.wait(30) == 130
        assert not _buildout_pids(sr)
        assert not node.pidfile.exists()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()


def test_http_release_and_unreachable_ones(node, serve_directory, closed_port: int) -> None:  # type: ignore[no-untyped-def]
    server = serve_directory(node.source.root)
    good = f"{server.url}/extends/software.cfg"
    missing = f"{server.url}/nothing/software.cfg"
    unreachable = f"http://127.0.0.1:{closed_port}/software.cfg"
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
    import re

    asctime = re.compile(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")
    assert asctime.match((a / ".completed").read_text())
    assert asctime.match((b / ".completed").read_text())
    assert (a / "bin" / "buildout").stat().st_mode == (b / "bin" / "buildout").stat().st_mode
    if ours.user:
        assert (b / "parts").owner() == theirs.user


# ---- progress in a terminal ---------------------------------------------------------------


def _set_sleep(node, seconds: float) -> None:  # type: ignore[no-untyped-def]
    cfg = node.source.path("slow")
    cfg.write_text(cfg.read_text().replace("sleep = 30", f"sleep = {seconds}"))


def test_progress_is_redrawn_in_a_terminal(proxy, software_node) -> None:  # type: ignore[no-untyped-def]
    import pty

    node = software_node(proxy)
    _set_sleep(node, 2.5)
    url = str(node.source.path("slow"))
    node.supply(url)
    primary, secondary = pty.openpty()
    env = {**node.environ(), "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen(
        node.command(),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    os.close(secondary)
    chunks = []
    try:
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(60) == 0
    finally:
        os.close(primary)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = b"".join(chunks).decode("utf-8", "replace")
    frames = [f.split("\r")[0].split("\n")[0] for f in text.split("\x1b[2K")[1:]]
    slow = [f for f in frames if f.endswith("installing part slow (2 parts done)")]
    assert slow, text
    # the line is redrawn while the part runs: its elapsed time moves on
    assert len({f.split("]")[0] for f in slow}) >= 2, slow
    assert frames[-1].startswith("[0:00:0") and frames[-1].endswith("built")
    assert "build" in frames[-1] and url[-40:] in text


def test_progress_without_a_terminal_is_plain_log_lines(proxy, software_node) -> None:  # type: ignore[no-untyped-def]
    node = software_node(proxy)
    url = str(node.source.path("success"))
    node.supply(url)
    result = node.run()
    assert result.returncode == 0
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    assert f"{url}: installing part instance-profile" in result.stderr


# ---- builds killed half-way -------------------------------------------------------------


def _start_slow_build(node):  # type: ignore[no-untyped-def]
    url = str(node.source.path("slow"))
    node.supply(url)
    proc = subprocess.Popen(
        node.command(),
        env=node.environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = node.log_path(url)
    wait_for(
        lambda: log.exists() and "part slow starting" in log.read_text(),
        60,
        "the slow part to start",
    )
    return url, proc


def _buildout_pids(sr: Path) -> list[int]:
    import psutil

    pids = []
    for p in psutil.process_iter():
        try:
            if Path(p.cwd()) == sr:
                pids.append(p.pid)
        except psutil.Error:
            pass
    return pids


def test_buildout_killed_half_way_is_an_error_and_the_next_run_recovers(node, master) -> None:  # type: ignore[no-untyped-def]
    url, proc = _start_slow_build(node)
    try:
        [pid] = _buildout_pids(node.sr_path(url))
        os.kill(pid, signal.SIGKILL)  # the OOM killer, say
        assert proc.wait(60) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    [error] = master.posted("softwareReleaseError")
    assert error["url"] == url
    assert not (node.sr_path(url) / ".completed").exists()
    _set_sleep(node, 0)
    result = node.run()
    assert result.returncode == 0, result.stderr
    assert (node.sr_path(url) / ".completed").exists()
    assert (node.sr_path(url) / "parts" / "slow" / "slow.txt").exists()


def test_node_killed_half_way_leaves_no_orphan_build(node) -> None:  # type: ignore[no-untyped-def]
    url, proc = _start_slow_build(node)
    sr = node.sr_path(url)
    os.kill(proc.pid, signal.SIGKILL)  # slapos itself dies; its buildout goes on alone
    proc.wait()
    [orphan] = _buildout_pids(sr)
    # a service of an instance that runs from the release directory is not a build
    service = subprocess.Popen(["sleep", "300"], cwd=sr, stdin=subprocess.DEVNULL)
    try:
        _set_sleep(node, 0)
        result = node.run()  # the stale pid file is taken over, the orphan build is stopped
        assert result.returncode == 0, result.stderr
        assert f"left in {sr} by an interrupted build: {orphan}" in result.stderr
        assert _buildout_pids(sr) == [service.pid]
        assert (sr / ".completed").exists()
    finally:
        service.kill()
        service.wait()


# ---- a full disk ------------------------------------------------------------------------


@pytest.mark.root
def test_full_disk_is_a_one_line_error_and_the_next_run_recovers(proxy, software_node) -> None:  # type: ignore[no-untyped-def]
    import tempfile

    mount = Path(tempfile.mkdtemp(prefix="slsfull", dir="/tmp"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=755", "tmpfs", str(mount)], check=True
    )
    try:
        node = software_node(proxy, extra="software_min_free_space = 1M\n", software_root=mount)
        big, small = str(node.source.path("big")), str(node.source.path("success"))
        node.supply(big)
        node.supply(small)
        result = node.run()
        assert result.returncode == 1
        failures = [line for line in result.stderr.splitlines() if " failed: " in line]
        assert len(failures) == 2, result.stderr
        assert big in failures[0] and "No space left on device" in failures[0]
        # the next release was still processed: refused before building on a full disk
        assert small in failures[1] and "not enough space in" in failures[1]
        assert "software_min_free_space" in failures[1]
        # the administrator makes room; no clean-up of the release directories is needed
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        result = node.run()
        assert result.returncode == 0, result.stderr
        assert (node.sr_path(big) / ".completed").exists()
        assert (node.sr_path(small) / ".completed").exists()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


# ---- binary cache -----------------------------------------------------------------------


def test_release_uploaded_to_the_binary_cache_is_installed_from_it(
    proxy, software_node, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    cache_fixtures = pytest.importorskip("tests.fixtures.cache")
    signing = cache_fixtures.make_signing(tmp_path / "keys")
    signing.key_file.chmod(0o644)
    with cache_fixtures.serve_cache(tmp_path / "cache") as cache:
        certificate = "\n  ".join(signing.cert_pem.strip().splitlines())
        extra = (
            "\n[networkcache]\n"
            f"upload-binary-cache-url = {cache.cache_url}\n"
            f"upload-binary-dir-url = {cache.dir_url}\n"
            f"download-binary-cache-url = {cache.cache_url}\n"
            f"download-binary-dir-url = {cache.dir_url}\n"
            f"signature-private-key-file = {signing.key_file}\n"
            f"signature-certificate-list =\n  {certificate}\n"
        )
        node = software_node(proxy, extra=extra)
        url = str(node.source.path("success"))
        node.supply(url)
        built = node.run()
        assert built.returncode == 0, built.stderr
        assert "uploaded" in built.stderr, built.stderr
        sr = node.sr_path(url)
        shutil.rmtree(sr)  # a new machine, say
        installed = node.run()
        assert installed.returncode == 0, installed.stderr
        assert f"installed {url} from the binary cache" in installed.stderr
        assert "bootstrapping" not in installed.stderr  # no buildout ran
        assert (sr / ".completed").exists()
        assert (sr / "parts" / "hello" / "hello.txt").exists()
        if node.user:
            assert (sr / "parts" / "hello" / "hello.txt").owner() == node.user


def test_dead_master_is_one_line_exit_1(software_node, closed_port: int) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    dead = SimpleNamespace(url=f"http://127.0.0.1:{closed_port}", computer_id="COMP-0")
    node = software_node(dead)
    result = node.run()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "cannot connect to master" in error
    assert not node.pidfile.exists()


def test_only_sr_and_garbage_collect(node) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    a, b = str(node.source.path("success")), node.source.file_url("extends")
    node.supply(a)
    node.supply(b)
    result = node.run("--only-sr", hashlib.md5(b.encode()).hexdigest())
    assert result.returncode == 0, result.stderr
    assert (node.sr_path(b) / ".completed").exists()
    assert not node.sr_path(a).exists()
    stray = node.software_root / ("0" * 32)
    stray.mkdir()
    (stray / "buildout.cfg").write_text("[buildout]\n")
    result = node.run("--garbage-collect", "--only", a)
    assert result.returncode == 0, result.stderr
    assert not stray.exists()
    assert (node.sr_path(a) / ".completed").exists() and node.sr_path(b).exists()


def test_instance_profile_of_the_success_release_deploys_offline(node) -> None:  # type: ignore[no-untyped-def]
    """tests/data/sr/success is deployable: its instance.cfg runs offline in a partition."""
    import shutil

    from slapos.grid import buildout
    from slapos.system import SubprocessRunner

    url = str(node.source.path("success"))
    node.supply(url)
    assert node.run().returncode == 0
    sr = node.sr_path(url)
    partition = node.base / "slappart0"
    partition.mkdir()
    (partition / "buildout.cfg").write_text((sr / "instance.cfg").read_text())
    if node.user:
        shutil.chown(partition, node.user, node.user)
    command = buildout.buildout_command(
        partition,
        argv_extra=["-c", str(partition / "buildout.cfg")],
        environ={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        buildout_binary=sr / "bin" / "buildout",
    )
    buildout.execute(command, runner=SubprocessRunner(), timeout=120)
    service = partition / "etc" / "service" / "hello"
    assert service.read_text() == "#!/bin/sh\nexec sleep 100000\n"
    assert service.stat().st_mode & 0o777 == 0o755


@pytest.mark.root
def test_netrc_of_the_software_user_is_copied_and_removed(node) -> None:  # type: ignore[no-untyped-def]
    home_netrc = node.software_root / ".netrc"  # the build user's home is software_root
    home_netrc.write_text("machine 127.0.0.1 login u password p\n")
    url = str(node.source.path("success"))
    node.supply(url)
    assert node.run().returncode == 0
    copy = node.sr_path(url) / ".netrc"
    assert copy.read_text() == home_netrc.read_text()
    assert copy.stat().st_mode & 0o777 == 0o600 and copy.owner() == node.user
    home_netrc.unlink()
    assert node.run("--force").returncode == 0
    assert not copy.exists()


def test_build_runs_as_the_owner_with_a_clean_environment(node) -> None:  # type: ignore[no-untyped-def]
    import json
    import pwd

    url = str(node.source.path("environ"))
    node.supply(url)
    env = {
        **node.environ(),
        "PYTHONPATH": "/nowhere",
        "LANG": "fr_FR.UTF-8",
        "LC_ALL": "fr_FR.UTF-8",
        "TMPDIR": "/nowhere",
        "KEPT": "yes",
    }
    result = subprocess.run(
        node.command(),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sr = node.sr_path(url)
    seen = json.loads((sr / "parts" / "environ" / "environment.json").read_text())
    owner = pwd.getpwnam(node.user) if node.user else pwd.getpwuid(os.getuid())
    assert (seen["uid"], seen["gid"]) == (owner.pw_uid, owner.pw_gid)
    assert seen["uid"] != 0 or os.geteuid() != 0
    assert seen["umask"] == 0o027
    assert seen["cwd"] == str(sr)
    environ = seen["environ"]
    assert environ["HOME"] == str(sr)
    assert environ["PYTHONNOUSERSITE"] == "true"
    assert environ["KEPT"] == "yes"
    assert environ["SLAPGRID_SOFTWARE_BUILD"] == str(sr)  # marks the build's processes
    for name in ("PYTHONPATH", "LANG", "LC_ALL", "TMPDIR"):
        assert name not in environ
    # umask 027: what the build creates is not world-readable
    assert (sr / "parts" / "environ" / "environment.json").stat().st_mode & 0o007 == 0


def test_a_distribution_is_downloaded_once_per_node(node) -> None:  # type: ignore[no-untyped-def]
    """Two releases needing the same egg: the node's download cache fetches it once."""
    import http.server
    import shutil
    import sys
    import threading

    served = node.base / "links"
    served.mkdir()
    egg = node.source.root / "recipe" / "srtest.recipe-1.0.egg"
    name = f"srtest.recipe-1.0-py{sys.version_info[0]}.{sys.version_info[1]}.egg"
    shutil.make_archive(str(served / "egg"), "zip", egg)
    (served / "egg.zip").rename(served / name)
    requested: list[str] = []

    class Recording(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            requested.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        urls = []
        for release_name in ("one", "two"):
            release = node.source.root / release_name
            release.mkdir(mode=0o755)
            (release / "software.cfg").write_text(
                "[buildout]\n"
                f"find-links = http://127.0.0.1:{server.server_address[1]}/\n"
                "parts = hello\nnewest = false\nallow-hosts = 127.0.0.1:*\n"
                "index = http://127.0.0.1:9/simple\n"
                f"[hello]\nrecipe = srtest.recipe\ncontent = {release_name}\n"
            )
            (release / "software.cfg").chmod(0o644)
            urls.append(str(release / "software.cfg"))
            node.supply(urls[-1])
        result = node.run()
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    for url in urls:
        assert list((node.sr_path(url) / "eggs").glob("*/srtest.recipe-1.0*.egg")), url
    assert requested.count(f"/{name}") == 1, requested
    cache = node.software_root / ".slapgrid" / "download-cache"
    assert (cache / "dist" / name).is_file()
    if node.user:
        assert cache.owner() == node.user
