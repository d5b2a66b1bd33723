"""Our proxy keeps what nodes report (upstream's throws it away): the last status and the
last error, with their time, of each instance and software installation, served by the
JSON-RPC `compute_node_status` and software-instance objects and by HATEOAS news."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.proxy import BACKENDS
from tests.fixtures.slap import format_computer
from tests.fixtures.upstream import RunningProxy

SR = "http://sr.example.invalid/software.cfg"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def rpc(proxy: RunningProxy, method: str, **body: Any) -> Any:
    answer = requests.post(f"{proxy.url}/{method}", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("proxy", BACKENDS, indirect=True)
def test_reports_are_kept_and_served(proxy: RunningProxy) -> None:
    from slapos.slap import slap

    format_computer(proxy.url, proxy.computer_id)
    s = slap()
    s.initializeConnection(proxy.url, timeout=10)
    s.registerSupply().supply(SR, proxy.computer_id)
    root = s.registerOpenOrder().request(SR, "root", partition_parameter_kw={"a": "1"})
    pid = root.getId()
    cp = s.registerComputerPartition(proxy.computer_id, pid)
    status = rpc(proxy, "slapos.get.v0.compute_node_status", computer_guid=proxy.computer_id)
    assert status == {
        "text": "0 instances and 0 installations reported",
        "instance_list": [],
        "software_installation_list": [],
    }

    cp.error("buildout failed: no space left on device")
    [release] = s.registerComputer(proxy.computer_id).getSoftwareReleaseList()
    release.error("download failed")  # a release reports too
    status = rpc(proxy, "slapos.get.v0.compute_node_status", computer_guid=proxy.computer_id)
    assert status["text"] == "1 instance and 1 installation reported, 2 failing"
    [instance] = status["instance_list"]
    assert instance["reference"] == pid and instance["title"] == "root"
    assert instance["status"] == "error"
    assert instance["message"] == instance["error"] == "buildout failed: no space left on device"
    assert ISO.match(instance["reported_at"]) and instance["error_at"] == instance["reported_at"]
    [software] = status["software_installation_list"]
    assert (software["reference"], software["status"]) == (SR, "error")
    got = rpc(proxy, "slapos.get.v0.software_instance", instance_guid="root______0")
    assert got["access_status_message"] == "#error buildout failed: no space left on device"

    # started later: the status changes, the last error is still told
    cp.started()
    release.available()
    status = rpc(proxy, "slapos.get.v0.compute_node_status", computer_guid=proxy.computer_id)
    [instance] = status["instance_list"]
    assert (instance["status"], instance["message"]) == ("started", "")
    assert instance["error"] == "buildout failed: no space left on device"
    assert status["software_installation_list"][0]["status"] == "available"
    got = rpc(proxy, "slapos.get.v0.instance_tree", title="root")
    assert got["access_status_message"] == "#access Instance correctly started"

    # the legacy status call (1.26.1's proxy: "Not implemented.")
    from slapos.slap import wire

    legacy = wire.loads(
        requests.get(
            f"{proxy.url}/getComputerPartitionStatus",
            params={"computer_id": proxy.computer_id, "computer_partition_id": pid},
            timeout=10,
        ).content
    )
    assert legacy["text"] == "#access Instance correctly started"
    assert legacy["last_error"] == "buildout failed: no space left on device"

    # HATEOAS: the tree's news, as `service info` reads it
    tree = requests.get(f"{proxy.url}/hateoas/partitions/root", timeout=10).json()
    [news] = tree["news"]["instance"]
    assert news["text"] == "#access Instance correctly started" and news["reference"] == pid

    # JSON-RPC reports are kept the same way
    rpc(
        proxy,
        "slapos.put.v0.software_instance_error",
        instance_guid="root______0",
        message="promise failed",
    )
    status = rpc(proxy, "slapos.get.v0.compute_node_status", computer_guid=proxy.computer_id)
    assert status["instance_list"][0]["message"] == "promise failed"

    # the partition is destroyed then reused: the old report is not shown for the new one
    s.registerOpenOrder().request(SR, "root", state="destroyed")
    cp.destroyed()
    again = s.registerOpenOrder().request(SR, "other").getId()
    assert again == pid
    status = rpc(proxy, "slapos.get.v0.compute_node_status", computer_guid=proxy.computer_id)
    assert status["instance_list"] == []


def test_revision_2_adds_the_status_table_to_an_existing_database(tmp_path: Path) -> None:
    from slapos.proxy import db

    path = tmp_path / "p.db"
    conn = db.connect(path)
    db.initialize(conn, path)
    conn.execute("DROP TABLE slapos_status")
    conn.execute("PRAGMA user_version = 1")  # a database from before revision 2
    db.initialize(conn, path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.REVISION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "slapos_status" in tables
    conn.close()
    # upstream's proxy reads only its *18 tables: ours is invisible to it
    assert sqlite3.connect(path).execute("SELECT count(*) FROM partition18").fetchone()[0] == 0
