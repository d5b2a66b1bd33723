"""Counted nouns agree with their number in what users read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from slapos.cli.context import Context
from slapos.cli.node.setup import _print_plan
from slapos.format.actions import WriteFile
from slapos.format.model import Computer
from slapos.format.plan import FormatPlan
from slapos.wording import counted

PACKAGE = Path(__file__).resolve().parents[2] / "slapos"


def test_counted() -> None:
    assert counted(1, "change") == "1 change"
    assert [counted(n, "change") for n in (0, 2)] == ["0 changes", "2 changes"]
    assert counted(1, "process", "processes") == "1 process"
    assert counted(3, "partition is", "partitions are") == "3 partitions are"


def test_one_change_planned_is_singular(tmp_path: Path) -> None:
    ctx = Context.for_test(tmp_path)
    plan = FormatPlan(
        Computer("COMP-1", "/opt/slapgrid", "/srv/slapgrid"), (WriteFile("/x", b"1"),)
    )
    _print_plan(plan, "COMP-1", ctx)
    assert ctx.stdout.getvalue() == "COMP-1: 1 change planned\n  write /x (1 byte, mode 0644)\n"


def test_no_message_says_s_in_parentheses() -> None:
    """ "partition(s)" reads as a form nobody finished: messages count with counted()."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {  # (for readers of the code, not of the command's output)
            id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
        }
        found += [
            f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and re.search(r"(?<!http)\((s|es)\)", node.value)
        ]
    assert found == []
