"""`slapos explain`'s text: the tree's head line counts its instances in plain English,
and its hints name the script actually run."""

from __future__ import annotations

import json
from pathlib import Path

from slapos.cli.context import Context
from slapos.cli.explain import render_tree
from slapos.cli.main import main
from slapos.slap.explain import InstanceState, TreeExplanation
from tests.fakes.master import FakeMaster, fake_master  # noqa: F401


def instance(title: str) -> InstanceState:
    return InstanceState(title, f"SOFTINST-{title}", "COMP-1", "slappart0", "started")


def test_instance_count_is_singular_or_plural() -> None:
    one = TreeExplanation("web", "http://127.0.0.1:8080/", [instance("web")])
    assert render_tree(one).startswith("instance tree 'web' (1 instance, http://127.0.0.1:8080/)")
    two = TreeExplanation("web", "http://127.0.0.1:8080/", [instance("web"), instance("kid")])
    assert render_tree(two).startswith("instance tree 'web' (2 instances, ")


def test_note_names_the_script_run(tmp_path: Path, fake_master: FakeMaster) -> None:  # noqa: F811
    """A master that keeps no status (upstream's proxy): the note names the `slapos` this
    run used, the way every other hint does, not a bare `slapos` a shell may not find."""
    root = {"title": "web", "instance_guid": "SOFTINST-1", "state": "started"}
    fake_master.routes.update(
        {
            "/slapos.get.v0.instance_tree": (200, json.dumps(root)),
            "/slapos.allDocs.WIP.compute_node_list": (200, json.dumps({"result_list": []})),
        }
    )
    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {fake_master.url}\n")
    script = tmp_path / "venv" / "bin" / "slapos"  # a virtualenv not on PATH
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    ctx = Context.for_test(tmp_path)
    ctx.argv0 = str(script)
    assert main(["explain", "web", "--cfg", str(cfg)], ctx=ctx) == 0
    out = ctx.stdout.getvalue()  # type: ignore[attr-defined]
    assert f"on the node, '{script} node explain' tells" in out
    assert "'slapos node explain'" not in out
