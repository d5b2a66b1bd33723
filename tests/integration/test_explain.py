"""`slapos explain INSTANCE_TITLE` on a real tree deployed by a real node: against our
proxy (which keeps what the node reported) and upstream's (which does not, and is named)."""

from __future__ import annotations

import json
import re

from tests.fixtures.grid_instance import BuiltSoftware, InstanceNode
from tests.fixtures.slap import is_upstream, master  # noqa: F401
from tests.integration.test_node_instance_plan import DOCS


def test_explain_names_the_failing_child(
    master,  # noqa: F811
    instance_node_factory,
    built_sr_instance: BuiltSoftware,
) -> None:
    node: InstanceNode = instance_node_factory(master, partitions=3, software=built_sr_instance)
    url = built_sr_instance.url
    node.request(url, "tree", child="kid", child_fail="1", promise="none")
    assert node.slapos("node", "instance").returncode == 0  # the root, which requests kid
    failed = node.slapos("node", "instance")  # kid's buildout fails
    assert failed.returncode == 1, failed.stderr
    client = node.base / "client.cfg"
    client.write_text(f"[slapos]\nmaster_url = {master.url}\n")

    done = node.slapos("explain", "tree", cfg=client)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("instance tree 'tree' (2 instances, ")
    root_line = next(line for line in text.splitlines() if line.lstrip("! ").startswith("tree "))
    kid_line = next(line for line in text.splitlines() if line.lstrip("! ").startswith("kid "))
    assert re.search(r"\[slappart\d on " + re.escape(master.computer_id) + r"\]", kid_line)
    assert "requested started" in kid_line
    assert "      connection  url = http://127.0.0.1:" in text

    missing = node.slapos("explain", "nope", cfg=client)
    assert missing.returncode == 2, missing.stderr
    assert "No instance tree nope found." in missing.stderr and "Traceback" not in missing.stderr
    data = json.loads(node.slapos("explain", "tree", "--format", "json", cfg=client).stdout)
    assert [i["title"] for i in data["instances"]] == ["tree", "kid"]
    if is_upstream(master):
        assert data["statuses_kept"] is False and data["first_failing"] is None
        assert "note: this master does not keep what nodes report" in text
        assert "reported: nothing yet" in kid_line
        return
    assert data["statuses_kept"] is True and data["first_failing"] == "kid"
    assert kid_line.startswith("! kid  [slappart")
    assert "reported error at 20" in kid_line
    assert "reported started at 20" in root_line and not root_line.startswith("!")
    assert "      error       buildout failed in " in text
    assert "instance failed on purpose (fail-buildout)" in text
    kid = data["instances"][1]
    assert text.rstrip().endswith(
        f"first failing instance: kid ({kid['partition_id']} on {master.computer_id}); "
        f"on that node, 'slapos node explain {kid['partition_id']}'"
    )
    stable = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:8080", text)
    stable = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "2026-12-06T01:15:12Z", stable)
    stable = stable.replace(str(node.instance_root), "/srv/slapgrid")
    stable = stable.replace(url, "https://lab.example/software/web/software.cfg")
    (DOCS / "explain-tree.txt").write_text(stable)
