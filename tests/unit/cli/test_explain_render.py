"""`slapos explain`'s text: the tree's head line counts its instances in plain English."""

from __future__ import annotations

from slapos.cli.explain import render_tree
from slapos.slap.explain import InstanceState, TreeExplanation


def instance(title: str) -> InstanceState:
    return InstanceState(title, f"SOFTINST-{title}", "COMP-1", "slappart0", "started")


def test_instance_count_is_singular_or_plural() -> None:
    one = TreeExplanation("web", "http://127.0.0.1:8080/", [instance("web")])
    assert render_tree(one).startswith("instance tree 'web' (1 instance, http://127.0.0.1:8080/)")
    two = TreeExplanation("web", "http://127.0.0.1:8080/", [instance("web"), instance("kid")])
    assert render_tree(two).startswith("instance tree 'web' (2 instances, ")
