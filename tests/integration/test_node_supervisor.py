"""`slapos node supervisord|supervisorctl|status|start|stop|restart|tail` on a node whose
partition runs a service."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fixtures.grid_instance import BuiltSoftware, InstanceNode


@pytest.fixture
def node(upstream_proxy, instance_node_factory, built_sr_instance: BuiltSoftware) -> InstanceNode:
    n: InstanceNode = instance_node_factory(
        upstream_proxy, partitions=1, software=built_sr_instance
    )
    n.request(built_sr_instance.url, "web")
    done = n.slapos("node", "instance")
    assert done.returncode == 0, done.stderr
    return n


def state(node: InstanceNode) -> str:
    from slapos.grid import supervisor

    return supervisor.process_states(node.instance_root, ["slappart0:web-on-watch"]).get(
        "slappart0:web-on-watch", "UNKNOWN"
    )


def test_status_stop_start_restart_tail(node: InstanceNode) -> None:
    status = node.slapos("node", "status")
    assert status.returncode == 0, status.stderr
    assert "slappart0:web-on-watch" in status.stdout and "RUNNING" in status.stdout
    assert "watchdog" in status.stdout

    stop = node.slapos("node", "stop", "slappart0:")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert state(node) == "STOPPED"
    start = node.slapos("node", "start", "slappart0:web-on-watch")
    assert start.returncode == 0, start.stdout + start.stderr
    assert state(node) == "RUNNING"
    restart = node.slapos("node", "restart", "slappart0:")
    assert restart.returncode == 0 and state(node) == "RUNNING"
    tail = node.slapos("node", "tail", "slappart0:web-on-watch")
    assert tail.returncode == 0, tail.stderr
    ctl = node.slapos("node", "supervisorctl", "status", "slappart0:")
    assert "web-on-watch" in ctl.stdout


def test_bare_node_is_status_and_supervisord_starts_it(node: InstanceNode) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAPOS_")}
    env["SLAPOS_CONFIGURATION"] = str(node.config)
    bare = subprocess.run(
        [sys.executable, "-m", "slapos", "node"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert bare.returncode == 0, bare.stderr
    assert "slappart0:web-on-watch" in bare.stdout

    node.stop_supervisord()
    started = node.slapos("node", "supervisord")
    assert started.returncode == 0, started.stderr
    again = node.slapos("node", "supervisord")  # already running: nothing to do
    assert again.returncode == 0, again.stderr
    # the configuration node instance wrote (with its watchdog) is kept
    assert "eventlistener:watchdog" in (node.instance_root / "etc/supervisord.conf").read_text()
    # services are not started by supervisord itself (autostart=false), node instance does
    assert node.slapos("node", "instance", "--force").returncode == 0
    assert state(node) == "RUNNING"


def test_watchdog_joins_a_supervisord_started_without_it() -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from slapos.config import MasterAccess
    from slapos.grid import supervisor
    from slapos.system import SubprocessRunner

    root = Path(tempfile.mkdtemp(prefix="slw", dir="/tmp"))
    try:
        supervisor.write_supervisord_config(root)  # as `node supervisord` on a new node
        supervisor.ensure_supervisord(root, SubprocessRunner())
        with supervisor.connect(root) as sv:
            assert sv.process_info("watchdog") is None
        command = supervisor.watchdog_command(MasterAccess("http://127.0.0.1:9"), "COMP-0", root)
        assert supervisor.write_supervisord_config(root, command).changed
        supervisor.ensure_supervisord(root, SubprocessRunner())  # as `node instance`
        with supervisor.connect(root) as sv:
            info = sv.process_info("watchdog")
        assert info is not None and info["statename"] in ("RUNNING", "STARTING")
    finally:
        supervisor.shutdown(root)
        shutil.rmtree(root, ignore_errors=True)
