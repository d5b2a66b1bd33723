"""`slapos node instance` when things go wrong: failing and hanging promises, a failing
buildout, a release that is not installed, a master that is down, a service that dies.

A RecordingMaster sits between the node and the master, so the tests see what the node reported
(upstream's proxy accepts softwareInstanceError but keeps nothing of it).
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.fakes.master import RecordingMaster
from tests.fixtures.common import fetch, wait_for
from tests.fixtures.grid_instance import InstanceNode


@pytest.fixture
def master(proxy):  # type: ignore[no-untyped-def]
    """Our proxy: these paths are the node's; the whole loop runs against both masters."""
    return proxy


@pytest.fixture
def node(recorder, instance_node_factory, built_sr_instance) -> InstanceNode:
    n: InstanceNode = instance_node_factory(recorder, software=built_sr_instance, promise_timeout=3)
    return n


def errors_for(recorder: RecordingMaster, partition_id: str) -> list[str]:
    return [
        f["error_log"]
        for f in recorder.posted("softwareInstanceError")
        if f.get("computer_partition_id") == partition_id
    ]


def started_for(recorder: RecordingMaster, partition_id: str) -> int:
    return sum(
        1
        for f in recorder.posted("startedComputerPartition")
        if f.get("computer_partition_id") == partition_id
    )


def test_failing_promise_then_fixed(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster
) -> None:
    pid = node.request(sr_url, "web", promise="fail").getId()
    done = node.slapos("node", "instance")
    assert done.returncode == 2, done.stderr
    message = "Promise 'check-web' failed with output: web check failed on purpose"
    assert message in done.stderr
    assert "error with promises for the following partitions" in done.stderr
    assert any(message in e for e in errors_for(recorder, pid))
    assert started_for(recorder, pid) == 0
    result = node.partition(pid) / ".slapgrid/promise/result/check-web.status.json"
    assert '"failed": true' in result.read_text()

    # node promise alone says the same, reporting nothing
    calls = len(recorder.calls)
    alone = node.slapos("node", "promise")
    assert alone.returncode == 2, alone.stderr
    assert not [c for c in recorder.calls[calls:] if c[0] == "POST"]

    # the release's promise is fixed (new parameters): the next run is clean
    node.request(sr_url, "web", promise="")
    fixed = node.slapos("node", "instance")
    assert fixed.returncode == 0, fixed.stderr
    assert started_for(recorder, pid) == 1
    assert node.slapos("node", "promise").returncode == 0


def test_hanging_promise_is_killed(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster
) -> None:
    node.request(sr_url, "web", promise="hang")
    done = node.slapos("node", "instance")
    assert done.returncode == 2, done.stderr
    assert "Error: Promise timed out after 3 seconds" in done.stderr


def test_failing_buildout_others_processed(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster
) -> None:
    bad = node.request(sr_url, "bad", fail_buildout="1").getId()
    good = node.request(sr_url, "good").getId()
    done = node.slapos("node", "instance")
    assert done.returncode == 1, done.stderr
    assert "error while processing the following partitions" in done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith(f"  {bad}["))
    assert "instance failed on purpose (fail-buildout)" in line
    assert f"{bad}/.slapgrid/log/instance.log" in line
    assert any("fail-buildout" in e for e in errors_for(recorder, bad))
    assert started_for(recorder, good) == 1
    url = node.request(sr_url, "good").getConnectionParameter("url")
    assert fetch(url) == f"hello from {good}\n"


def test_release_not_installed(node: InstanceNode, sr_url: str, recorder: RecordingMaster) -> None:
    pid = node.request(sr_url + "-missing", "ghost").getId()
    done = node.slapos("node", "instance")
    assert done.returncode == 1, done.stderr
    assert "is not installed" in done.stderr
    assert "run 'slapos node software'" in done.stderr
    assert errors_for(recorder, pid)
    assert "Traceback" not in done.stderr


def test_master_down_offline_mode(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster
) -> None:
    from slapos.grid import supervisor

    pid = node.request(sr_url, "web").getId()
    assert node.slapos("node", "instance").returncode == 0
    url = node.request(sr_url, "web").getConnectionParameter("url")
    # a program of the node's supervisord that is no partition's (as configure local's
    # proxy), which its admin stopped: offline mode leaves it stopped
    supervisor.add_program(
        node.instance_root,
        supervisor.Program(name="extra", command="sleep 600", autostart=True, startsecs=0),
    )
    supervisor.apply(node.instance_root)
    with supervisor.connect(node.instance_root) as sv:
        sv.stop_group(pid)
        sv.stop_group("extra")
    assert fetch(url) is None
    recorder.down = True
    done = node.slapos("node", "instance")
    assert done.returncode == 3, done.stderr
    assert "offline mode" in done.stderr
    assert "Traceback" not in done.stderr
    wait_for(lambda: fetch(url), 10, "the service to be started offline")
    with supervisor.connect(node.instance_root) as sv:
        info = sv.process_info("extra:extra")
        assert info is not None and info["statename"] == "STOPPED"


def test_watchdog_bangs_then_reprocessed(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster
) -> None:
    from slapos.grid import supervisor

    pid = node.request(sr_url, "web").getId()
    assert node.slapos("node", "instance").returncode == 0
    assert "skipped, up to date" in node.slapos("node", "instance").stderr
    with supervisor.connect(node.instance_root) as sv:
        info = sv.process_info(f"{pid}:web-on-watch")
    assert info is not None
    os.kill(int(info["pid"]), signal.SIGKILL)

    def banged() -> bool:
        return any(
            f.get("computer_partition_id") == pid for f in recorder.posted("softwareInstanceBang")
        )

    wait_for(banged, 15, "the watchdog to bang")
    [bang] = [
        f for f in recorder.posted("softwareInstanceBang") if f["computer_partition_id"] == pid
    ]
    assert bang["message"] == f"web-on-watch process in partition {pid} encountered a problem"
    again = node.slapos("node", "instance")
    assert again.returncode == 0, again.stderr
    assert f"{pid}[default]: processed" in again.stderr
    url = node.request(sr_url, "web").getConnectionParameter("url")
    wait_for(lambda: fetch(url), 10, "the service to be back")


def test_child_request_from_buildout_and_node_bang(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster
) -> None:
    parent = node.request(sr_url, "parent", child="kid").getId()
    done = node.slapos("node", "instance")
    assert done.returncode == 0, done.stderr
    [related] = [
        f
        for f in recorder.posted("updateComputerPartitionRelatedInstanceList")
        if f["computer_partition_id"] == parent
    ]
    assert "kid" in related["instance_reference_xml"]
    # the child got a partition of its own, deployed by the next run
    again = node.slapos("node", "instance")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count(": processed") == 1
    assert "skipped, up to date" in again.stderr

    bang = node.slapos("node", "bang", "-m", "please reprocess")
    assert bang.returncode == 0, bang.stderr
    assert recorder.posted("computerBang")[-1]["message"] == "please reprocess"


def test_second_run_exits_10_while_one_holds_the_lock(node: InstanceNode) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "slapos node instance"]
    )
    try:
        (node.base / "cp.pid").write_text(f"{holder.pid}\n")
        for command in ("instance", "promise"):
            done = node.slapos("node", command)
            assert done.returncode == 10, done.stderr
            assert "another slapos process is already running" in done.stderr
    finally:
        holder.kill()
        holder.wait()
    assert node.slapos("node", "instance").returncode == 0
