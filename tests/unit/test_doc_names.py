"""What the documentation names exists: the docs describe today's code, not last month's.

Read statically (nothing is imported), in docs/*.rst, README.rst and the docstrings and
comments of slapos/:

* every dotted name of our package (``slapos.grid.instance_apply.PartitionJob``) is a module
  of slapos/, and its next part a name that module defines at its top level;
* every path of the repository (``slapos/grid/release.py``, ``tests/fakes/``) exists;
* every section of docs/spec cited as ``protocol.md §8.14`` is a heading of that file.

CHANGES.rst is history and names what was; docs/spec describes upstream's tree.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "slapos"

#: Dotted names that are no module: logger names.
NOT_MODULES = {"slapos.proxy.access"}
#: Paths named because they do not exist (slapos is a namespace package).
NOT_FILES = {"slapos/__init__.py"}

DOTTED = re.compile(r"(?<![\w./-])slapos(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w./~-])(?:slapos|tests|benchmarks|docs)/[\w./*-]*[\w/*]")
CITATION = re.compile(r"\b(protocol|node|cli)\.md[\s(,]*((?:§\s*[0-9][0-9.]*[\s,/and-]*)+)")


def sources() -> list[Path]:
    return [
        REPO / "README.rst",
        *sorted((REPO / "docs").glob("*.rst")),
        *sorted(PACKAGE.rglob("*.py")),
    ]


def prose(path: Path) -> str:
    """The text of a page; the docstrings and comments of a module."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return text
    parts = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            parts.append(ast.get_docstring(node, clean=False) or "")
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    parts.extend(token.string for token in tokens if token.type == tokenize.COMMENT)
    return "\n".join(parts)


@cache
def top_level_names(module: Path) -> frozenset[str]:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):  # names bound under `if TYPE_CHECKING:` or `try:` count too
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Name)) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return frozenset(names)


def module_file(parts: list[str]) -> Path | None:
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def missing_name(dotted: str) -> str | None:
    """Why `dotted` names nothing in slapos/, or None when it does."""
    parts = dotted.split(".")
    if len(parts) < 2 or dotted in NOT_MODULES:
        return None
    if not (PACKAGE / parts[1]).is_dir() and not (PACKAGE / f"{parts[1]}.py").is_file():
        return None  # another distribution's name: slapos.core, slapos.cookbook, slapos.cfg...
    for end in range(len(parts), 1, -1):
        module = module_file(parts[:end])
        if module is None:
            continue
        if end == len(parts):
            return None
        name = parts[end]
        if module.name == "__init__.py" and (module.parent / name).exists():
            return None
        if name in top_level_names(module):
            return None
        return f"{module.relative_to(REPO)} defines no {name}"
    return f"no module {'/'.join(parts[:2])}"


@cache
def spec_sections(name: str) -> frozenset[str]:
    text = (REPO / "docs" / "spec" / f"{name}.md").read_text(encoding="utf-8")
    return frozenset(re.findall(r"^#+\s+([0-9]+(?:\.[0-9]+)*)\.?\s", text, re.M))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_names_and_paths_exist(path: Path) -> None:
    text = prose(path)
    problems = []
    for dotted in sorted(set(DOTTED.findall(text))):
        why = missing_name(dotted.rstrip("."))
        if why:
            problems.append(f"{dotted}: {why}")
    for named in sorted(set(PATH.findall(text))):
        pattern = named.rstrip("/.")
        if (
            pattern not in NOT_FILES
            and not any(REPO.glob(pattern))
            and not any(REPO.glob(pattern + ".py"))
        ):
            problems.append(f"{named}: no such file")
    for spec, sections in CITATION.findall(text):
        for section in re.findall(r"[0-9][0-9.]*[0-9]|[0-9]", sections):
            if section not in spec_sections(spec):
                problems.append(f"{spec}.md §{section}: no such section")
    assert not problems, f"{path.relative_to(REPO)} names what is not there: {problems}"


def test_the_checks_find_what_is_gone() -> None:
    assert missing_name("slapos.grid.instance_apply.PartitionJob") is None
    assert missing_name("slapos.core") is None
    assert missing_name("slapos.format.planner") == "slapos/format/__init__.py defines no planner"
    assert missing_name("slapos.proxy.marshal") == "slapos/proxy/__init__.py defines no marshal"
    assert "8.14" in spec_sections("protocol") and "8.14.3" not in spec_sections("protocol")
