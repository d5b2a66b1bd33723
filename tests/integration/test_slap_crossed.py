"""Crossed interop: upstream 1.26.1's library and CLI and ours, talking to the same master.

Our node side publishes, upstream's requester reads, and the other way round; upstream's
`slapos request` and ours agree on what the master holds. The masters: 1.26.1's proxy, ours
on sqlite and on PostgreSQL, and ours on PostgreSQL served by granian (a fleet's master).
"""

from __future__ import annotations

import json

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.slap import slap
from tests.fixtures.slap import MASTERS, format_computer, master  # noqa: F401

pytestmark = pytest.mark.parametrize("master", [*MASTERS, "proxy_granian"], indirect=True)

SR = "https://example.invalid/software/demo/software.cfg"


def ours(master):  # noqa: F811
    s = slap()
    s.initializeConnection(master.url, timeout=10)
    return s


def upstream_snippet(upstream, master, body: str):  # noqa: F811
    result = upstream.python_code(
        f"""
        import json, slapos.slap
        s = slapos.slap.slap()
        s.initializeConnection({master.url!r})
        cid = {master.computer_id!r}
        SR = {SR!r}
        """
        + body
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_upstream_requests_our_node_side_publishes(upstream, master):  # noqa: F811
    format_computer(master.url, master.computer_id)
    out = upstream_snippet(
        upstream,
        master,
        """
        p = s.registerOpenOrder().request(SR, "up-root", {"a": "1"}, software_type="web")
        print(p.getId())
        """,
    )
    partition_id = out.strip()
    node = ours(master).registerComputerPartition(master.computer_id, partition_id)
    assert node.getType() == "web"
    assert node.getInstanceParameterDict()["a"] == "1"
    node.setConnectionDict({"_": json.dumps({"url": "http://ours"})})
    out = upstream_snippet(
        upstream,
        master,
        """
        p = s.registerOpenOrder().request(SR, "up-root", {"a": "1"}, software_type="web")
        print(json.dumps(p.getConnectionParameterDict()))
        """,
    )
    assert json.loads(out) == {"_": json.dumps({"url": "http://ours"})}


def test_we_request_upstream_node_side_publishes(upstream, master):  # noqa: F811
    format_computer(master.url, master.computer_id)
    requested = ours(master).registerOpenOrder().request(SR, "our-root", {"b": "2"})
    child_id = upstream_snippet(
        upstream,
        master,
        f"""
        p = s.registerComputerPartition(cid, {requested.getId()!r})
        assert p.getInstanceParameterDict()["b"] == "2"
        p.setConnectionDict({{"url": "http://upstream"}})
        child = p.request(SR, "child-type", "up-child", partition_parameter_kw={{"c": "3"}})
        print(child.getId())
        """,
    ).strip()
    again = ours(master).registerOpenOrder().request(SR, "our-root", {"b": "2"})
    assert again.getConnectionParameterDict() == {"url": "http://upstream"}
    child = ours(master).registerComputerPartition(master.computer_id, child_id)
    assert child.getInstanceParameterDict()["root_instance_title"] == "our-root"
    assert child.getType() == "child-type"


def test_upstream_cli_and_ours_agree(upstream, master, tmp_path):  # noqa: F811
    format_computer(master.url, master.computer_id)
    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {master.url}\n")
    request = ["request", "shared-inst", SR, "--parameters", "x=1", "--cfg", str(cfg)]
    result = upstream.run(*request, env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "State is : started." in result.stderr
    ctx = Context.for_test(tmp_path)
    assert main([*request, "--format", "json"], ctx=ctx) == 0
    assert json.loads(ctx.stdout.getvalue())["state"] == "started"
    result = upstream.run(
        "supply", SR, master.computer_id, "--cfg", str(cfg), env={"HOME": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    computer = ours(master).registerComputer(master.computer_id)
    assert [r.getURI() for r in computer.getSoftwareReleaseList()] == [SR]
