"""Node-side API of slapos.slap against a real master (upstream's proxy; ours once it lands)."""

from __future__ import annotations

import pytest

from slapos.slap import NotFoundError, ResourceNotReady, ServerError, slap
from tests.fixtures.slap import format_computer, is_upstream, master  # noqa: F401

SR = "https://example.invalid/software/demo/software.cfg"
SR2 = "https://example.invalid/software/other/software.cfg"


@pytest.fixture
def conn(master):  # noqa: F811
    s = slap()
    s.initializeConnection(master.url, timeout=10)
    format_computer(master.url, master.computer_id)
    return s


def test_partitions_and_software_list(master, conn):  # noqa: F811
    supply = conn.registerSupply()
    supply.supply(SR, master.computer_id)
    supply.supply(SR2, master.computer_id, "destroyed")
    computer = conn.registerComputer(master.computer_id)
    partitions = computer.getComputerPartitionList()
    assert sorted(p.getId() for p in partitions) == ["slappart0", "slappart1", "slappart2"]
    free = partitions[0]
    assert free.getState() == "destroyed"
    with pytest.raises(NotFoundError):
        free.getSoftwareRelease()
    releases = {r.getURI(): r.getState() for r in computer.getSoftwareReleaseList()}
    assert releases == {SR: "available", SR2: "destroyed"}
    for release in computer.getSoftwareReleaseList():
        assert release.getComputerId() == master.computer_id
        release.building()
        if release.getState() == "available":
            release.available()
            release.error("a build log\nwith two lines")
        else:
            release.destroyed()
    fresh = conn.registerComputer(master.computer_id)
    assert [r.getURI() for r in fresh.getSoftwareReleaseList()] == [SR]
    computer.bang("node bang")
    computer.reportUsage("")  # nothing to report: no call


def test_instance_lifecycle_from_node_side(master, conn):  # noqa: F811
    order = conn.registerOpenOrder()
    requested = order.request(
        SR, "MyRoot", partition_parameter_kw={"foo": "bar", "num": 1}, software_type="web"
    )
    partition_id = requested.getId()
    node_side = {
        p.getId(): p for p in conn.registerComputer(master.computer_id).getComputerPartitionList()
    }[partition_id]
    assert node_side.getState() == "started"
    assert node_side.getType() == "web"
    assert node_side.getSoftwareRelease().getURI() == SR
    params = node_side.getInstanceParameterDict()
    assert params["foo"] == "bar"
    assert params["num"] == "1"  # the proxy stores instance XML: every value is a string
    assert params["slap_computer_partition_id"] == partition_id
    assert node_side.getInstanceGuid()
    assert node_side.getCertificate() == {"certificate": "", "key": ""}
    node_side.setConnectionDict({"url": "http://r.example.invalid", "k": "v"})
    node_side.started()
    node_side.stopped()
    node_side.error("instance failed")
    node_side.bang("something is wrong")

    # The requester reads what the node published
    again = order.request(SR, "MyRoot", software_type="web")
    assert again.getConnectionParameterDict() == {"url": "http://r.example.invalid", "k": "v"}
    assert again.getConnectionParameter("k") == "v"
    with pytest.raises(NotFoundError):
        again.getConnectionParameter("missing")

    # registerComputerPartition gives the same view, fetched lazily
    direct = conn.registerComputerPartition(master.computer_id, partition_id)
    assert direct.getInstanceParameterDict()["instance_title"] == "MyRoot"
    assert direct.getConnectionParameterDict()["url"] == "http://r.example.invalid"

    # state changes
    stopped = order.request(SR, "MyRoot", software_type="web", state="stopped")
    assert stopped.getId() == partition_id
    direct = conn.registerComputerPartition(master.computer_id, partition_id)
    assert direct.getState() == "stopped"
    order.request(SR, "MyRoot", software_type="web", state="destroyed")
    direct = conn.registerComputerPartition(master.computer_id, partition_id)
    assert direct.getState() == "destroyed"
    direct.destroyed()
    freed = conn.registerComputerPartition(master.computer_id, partition_id)
    assert freed.getState() == "destroyed"
    with pytest.raises(NotFoundError):
        freed.getSoftwareRelease()


def test_child_instances_rename_and_related_list(master, conn):  # noqa: F811
    root = conn.registerOpenOrder().request(SR, "Root")
    parent = conn.registerComputerPartition(master.computer_id, root.getId())
    child = parent.request(SR, "child-type", "Child", partition_parameter_kw={"x": "1"})
    assert child.getId() != root.getId()
    node_child = conn.registerComputerPartition(master.computer_id, child.getId())
    params = node_child.getInstanceParameterDict()
    assert params["root_instance_title"] == "Root"
    assert node_child.getType() == "child-type"
    node_child.setConnectionDict({"child-url": "http://child"})
    assert parent.request(SR, "child-type", "Child").getConnectionParameterDict() == {
        "child-url": "http://child"
    }
    # rename the child, then the parent finds it under the new name
    node_child.rename("Renamed")
    renamed = conn.registerComputerPartition(master.computer_id, child.getId())
    assert renamed.getInstanceParameterDict()["instance_title"] == "Renamed"
    # upstream's proxy does not serve these calls (404; slapgrid logs and goes on), ours does
    try:
        parent.setComputerPartitionRelatedInstanceList(["Child"])
    except NotFoundError:
        assert is_upstream(master)
    try:
        assert isinstance(parent.getFullHostingIpAddressList(), list)
    except NotFoundError:
        assert is_upstream(master)


def test_transaction_file_written_by_child_request(master, conn, tmp_path, monkeypatch):  # noqa: F811
    root = conn.registerOpenOrder().request(SR, "Root")
    pid = root.getId()
    (tmp_path / pid).mkdir()
    monkeypatch.setenv("SLAPGRID_INSTANCE_ROOT", str(tmp_path))
    parent = conn.registerComputerPartition(master.computer_id, pid)
    transaction = tmp_path / pid / f".slapos-request-transaction-{pid}"
    assert transaction.read_text() == ""
    parent.request(SR, None, "ChildA")
    parent.request(SR, None, "ChildB")
    assert transaction.read_text() == "ChildA\nChildB\n"


def test_not_found_and_not_ready(master, conn):  # noqa: F811
    # upstream's proxy answers 500 for unknown computers and partitions, ours 404
    with pytest.raises(ServerError if is_upstream(master) else NotFoundError):
        conn.registerComputer("COMP-UNKNOWN").getComputerPartitionList()
    with pytest.raises(ServerError if is_upstream(master) else NotFoundError):
        conn.registerComputerPartition(master.computer_id, "nope").getState()
    with pytest.raises(NotFoundError):
        conn.registerComputerPartition("", "x")
    order = conn.registerOpenOrder()
    for i in range(3):
        order.request(SR, f"fill{i}")
    with pytest.raises(NotFoundError, match="No free computer partition"):
        order.request(SR, "one-too-many")
    try:  # computer status is not served by upstream's proxy
        conn.registerComputer(master.computer_id).getStatus()
    except NotFoundError:
        assert is_upstream(master)
    from slapos.slap import ComputerPartition

    pending = ComputerPartition(request_dict={"x": "y"})
    with pytest.raises(ResourceNotReady):
        pending.getId()
