"""slapos.core 1.26.1's node (`node software`, `node instance`, `node report`) against our
proxy (on sqlite, on PostgreSQL, on PostgreSQL served by granian), with a tiny offline
software release (tests/data/proxy-sr)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from slapos.slap.marshal import dumps, loads
from tests.fixtures.grid import materialise_sr
from tests.fixtures.proxy import BACKENDS, FLEET, request_form
from tests.fixtures.upstream import RunningProxy, Upstream

DATA = Path(__file__).resolve().parents[1] / "data" / "proxy-sr"
# Upstream's interpreter lives under /root (0700); builds run as the software user. In a
# private mount namespace /root becomes a 0755 tmpfs holding only .pyenv.
EXPOSE_PYENV = (
    'side=$(mktemp -d) && mount --bind /root/.pyenv "$side" && '
    "mount -t tmpfs -o mode=755 tmpfs /root && mkdir /root/.pyenv && "
    'mount --move "$side" /root/.pyenv && rmdir "$side" && exec "$@"'
)


def _node(upstream: Upstream, config: Path, *command: str) -> subprocess.CompletedProcess[str]:
    argv = [str(upstream.slapos), "node", *command, "--cfg", str(config), "--now"]
    if os.geteuid() == 0 and str(upstream.python.resolve()).startswith("/root/"):
        argv = ["unshare", "-m", "sh", "-c", EXPOSE_PYENV, "sh", *argv]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False
    )


def _full(proxy: RunningProxy) -> dict[str, Any]:
    answer = requests.get(
        f"{proxy.url}/getFullComputerInformation", params={"computer_id": proxy.computer_id},
        timeout=30,
    )  # fmt: skip
    computer = loads(answer.text)
    return {p.args[1]: p.state for p in computer.state["_computer_partition_list"]}


@pytest.fixture
def node_base() -> Iterator[Path]:
    """A world-traversable directory: partition users cannot cross pytest's 0700 base."""
    base = Path(tempfile.mkdtemp(prefix="slapos-proxy-node-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base / "node"
    finally:
        # `node instance` leaves a supervisord daemon running in the instance root
        pidfile = base / "node" / "inst" / "var" / "run" / "supervisord.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("proxy", [*BACKENDS, FLEET], indirect=True)
def test_upstream_node_installs_deploys_and_destroys(
    upstream: Upstream, proxy: RunningProxy, node_base: Path
) -> None:
    base = node_base
    base.mkdir()
    sources = materialise_sr(base / "sources")
    release = base / "release"
    release.mkdir()
    (release / "software.cfg").write_text(
        (DATA / "software.cfg").read_text().replace("@RECIPE@", str(sources.root / "recipe"))
    )
    release.chmod(0o755)
    (release / "software.cfg").chmod(0o644)
    url = str(release / "software.cfg")
    software_root, instance_root = base / "soft", base / "inst"
    software_root.mkdir()
    partitions = [instance_root / f"slappart{i}" for i in range(2)]
    for path in partitions:
        path.mkdir(parents=True)
        path.chmod(0o750)
    if os.geteuid() == 0:  # builds and instances run as the owner of the roots
        nobody = pwd.getpwnam("nobody")
        for path in [base, software_root, instance_root, *partitions]:
            shutil.chown(path, nobody.pw_uid, nobody.pw_gid)
    config = base / "slapos.cfg"
    config.write_text(
        f"[slapos]\ncomputer_id = {proxy.computer_id}\nmaster_url = {proxy.url}\n"
        f"software_root = {software_root}\ninstance_root = {instance_root}\nroot_check = false\n"
        f"software_min_free_space = 0\ninstance_min_free_space = 0\n"
        f"pidfile_software = {base}/sr.pid\npidfile_instance = {base}/inst.pid\n"
        f"pidfile_report = {base}/report.pid\n"
    )
    computer = {
        "reference": proxy.computer_id, "address": "127.0.0.1", "netmask": "255.0.0.0",
        "partition_list": [
            {"reference": p.name, "tap": {"name": ""},
             "address_list": [{"addr": f"127.0.0.{10 + i}", "netmask": "255.0.0.0"}]}
            for i, p in enumerate(partitions)
        ],
    }  # fmt: skip
    session = requests.Session()
    assert session.post(f"{proxy.url}/loadComputerConfigurationFromXML",
                        data={"xml": dumps(computer)}, timeout=30).text == "done"  # fmt: skip
    session.post(f"{proxy.url}/supplySupply",
                 data={"url": url, "computer_id": proxy.computer_id, "state": "available"},
                 timeout=30)  # fmt: skip

    def request(state: str | None) -> None:
        form = request_form("i1", software_release=url, state=state)
        assert session.post(f"{proxy.url}/requestComputerPartition", data=form, timeout=30).ok

    request(None)
    software = _node(upstream, config, "software")
    assert software.returncode == 0, software.stdout + software.stderr
    assert "Finished software releases." in software.stderr
    instance = _node(upstream, config, "instance")
    assert instance.returncode == 0, instance.stdout + instance.stderr
    timestamp = (partitions[0] / ".timestamp").read_text()
    assert timestamp == _full(proxy)["slappart0"]["_parameter_dict"]["timestamp"]
    log = proxy.log.read_text()
    assert '"POST /availableSoftwareRelease" 200' in log
    assert '"POST /startedComputerPartition" 200' in log
    # nothing changed: the partition is not processed again
    again = _node(upstream, config, "instance")
    assert again.returncode == 0, again.stderr
    assert "Processing Computer Partition slappart0" not in again.stderr
    request("destroyed")
    instance = _node(upstream, config, "instance")
    assert instance.returncode == 0, instance.stderr
    report = _node(upstream, config, "report")
    assert report.returncode == 0, report.stdout + report.stderr
    assert '"POST /destroyedComputerPartition" 200' in proxy.log.read_text()
    state = _full(proxy)["slappart0"]
    assert state["_requested_state"] == "destroyed" and state["_software_release_document"] is None
