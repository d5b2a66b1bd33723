"""`slapos node instance` end to end: real zc.buildout, real supervisord, a real master.

The master is upstream's proxy (and ours once it lands: tests/fixtures/slap.py MASTERS).
As root, partitions belong to users made for the test, and services must run as them.
"""

from __future__ import annotations

import os
import pwd

import pytest

from tests.fixtures.common import fetch, wait_for
from tests.fixtures.grid_instance import (
    InstanceNode,
)
from tests.fixtures.slap import master  # noqa: F401


def service_pid(node: InstanceNode, name: str) -> int | None:
    from slapos.grid import supervisor

    info = supervisor.process_states(node.instance_root, [name])
    if info.get(name) != "RUNNING":
        return None
    with supervisor.connect(node.instance_root) as sv:
        return int(sv.process_info(name)["pid"])  # type: ignore[index]


@pytest.fixture
def node(master, instance_node_factory, built_sr_instance) -> InstanceNode:  # noqa: F811
    n: InstanceNode = instance_node_factory(master, partitions=3, software=built_sr_instance)
    return n


def url_of(node: InstanceNode, sr_url: str, name: str) -> str | None:
    try:
        url: str | None = node.request(sr_url, name).getConnectionParameter("url")
        return url
    except Exception:
        return None


def test_whole_loop(node: InstanceNode, sr_url: str) -> None:
    partition_id = node.request(sr_url, "web").getId()
    done = node.slapos("node", "instance")
    assert done.returncode == 0, done.stderr
    assert f"{partition_id}[default]: processed" in done.stderr
    url = url_of(node, sr_url, "web")
    assert url and url.startswith("http://127.0.0.1:")
    assert fetch(url) == f"hello from {partition_id}\n"
    client = node.base / "slapos-client.cfg"
    client.write_text(f"[slapos]\nmaster_url = {node.master_url}\n")
    shown = node.slapos("request", "web", sr_url, cfg=client)
    assert shown.returncode == 0, shown.stderr
    assert url in shown.stdout
    pid = service_pid(node, f"{partition_id}:web-on-watch")
    assert pid is not None
    owner = os.stat(f"/proc/{pid}").st_uid
    path = node.partition(partition_id)
    assert owner == path.stat().st_uid
    if os.geteuid() == 0:
        assert pwd.getpwuid(owner).pw_name in node.partition_users

    # a second run has nothing to do
    again = node.slapos("node", "instance")
    assert again.returncode == 0, again.stderr
    assert "skipped, up to date" in again.stderr

    # stop -> process gone; start -> back
    node.request(sr_url, "web", state="stopped")
    assert node.slapos("node", "instance").returncode == 0
    assert fetch(url) is None
    assert service_pid(node, f"{partition_id}:web-on-watch") is None
    node.request(sr_url, "web", state="started")
    assert node.slapos("node", "instance").returncode == 0
    wait_for(lambda: fetch(url), 10, "the service to answer again")

    # destroyed -> node report -> partition empty and free again
    node.request(sr_url, "web", state="destroyed")
    assert node.slapos("node", "instance").returncode == 0
    assert fetch(url) is None
    report = node.slapos("node", "report")
    assert report.returncode == 0, report.stderr
    said = (report.stdout + report.stderr).splitlines()
    assert [line for line in said if line.endswith(f"{partition_id}: destroyed")] != []
    assert len([line for line in said if f"{partition_id}: destroyed" in line]) == 1  # once
    assert os.listdir(path) == []
    assert path.stat().st_mode & 0o777 == 0o750
    again = node.request(sr_url, "web2")
    assert again.getId() in {"slappart0", "slappart1", "slappart2"}


@pytest.mark.root
def test_each_partition_runs_as_its_own_user(node: InstanceNode, sr_url: str) -> None:
    first = node.request(sr_url, "one", promise="none").getId()
    second = node.request(sr_url, "two", promise="none").getId()
    done = node.slapos("node", "instance")
    assert done.returncode == 0, done.stderr
    owners = {}
    for partition_id in (first, second):
        pid = service_pid(node, f"{partition_id}:web-on-watch")
        assert pid is not None
        owners[partition_id] = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
        assert (
            owners[partition_id] == pwd.getpwuid(node.partition(partition_id).stat().st_uid).pw_name
        )
        # buildout ran as that user too: what it made belongs to it
        assert node.partition(partition_id).joinpath("etc/service/web").stat().st_uid == (
            node.partition(partition_id).stat().st_uid
        )
    assert owners[first] != owners[second]
    assert set(owners.values()) <= set(node.partition_users)
