"""The import layering of `slapos`, written once and checked on every module.

Each top-level part of the package sits in a layer; a module may import from its own part and
from parts in lower layers, never from a part beside it or above it. Function-level imports
count too (they hide cycles, they do not remove them).

    demo
    cli
    grid | format | proxy | collect | util (upstream's slapos.util names, a facade)
    slap | cache
    config | system
    errors | version | wording
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "slapos"

LAYERS: list[set[str]] = [
    {"errors", "version", "wording"},
    {"config", "system"},
    {"slap", "cache"},
    {"grid", "format", "proxy", "collect", "util"},
    {"cli"},
    {"demo"},
    {"__main__"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}

#: Known exceptions, each to be removed by moving code, never extended.
ALLOWED: set[tuple[str, str]] = set()


def imported_parts(path: Path) -> set[str]:
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "slapos":
                names = [f"slapos.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        parts.update(name.split(".")[1] for name in names if name.startswith("slapos."))
    return parts


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_has_a_layer() -> None:
    unknown = {part_of(p) for p in modules()} - RANK.keys()
    assert not unknown, f"put {sorted(unknown)} in a layer of tests/unit/test_layers.py"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    me = part_of(path)
    relative = str(path.relative_to(PACKAGE))
    wrong = sorted(
        part
        for part in imported_parts(path) - {me}
        if RANK.get(part, len(LAYERS)) >= RANK[me] and (relative, part) not in ALLOWED
    )
    assert not wrong, f"slapos/{relative} imports {wrong}: a layer at or above its own ({me})"


def test_allowed_exceptions_are_still_needed() -> None:
    for relative, part in ALLOWED:
        assert part in imported_parts(PACKAGE / relative), f"remove {relative} from ALLOWED"
