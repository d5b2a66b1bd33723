"""The demo software release: shipped in this package (software/), copied into DIR."""

from __future__ import annotations

import os
import pwd
from importlib import resources
from pathlib import Path


def materialise_release(target: Path) -> bool:
    """Copy the shipped release into `target` (`*.in` files renamed, @RECIPE@ filled in).

    Returns whether anything changed; files already up to date are left alone, so the
    release URL and its build stay valid across runs.
    """
    source = resources.files("slapos.demo").joinpath("software")
    recipe = target / "recipe"
    changed = False

    def copy(node: resources.abc.Traversable, dest: Path) -> None:
        nonlocal changed
        for child in node.iterdir():
            if child.name == "__pycache__" or child.name.endswith(".egg-info"):
                continue
            if child.is_dir():
                copy(child, dest / child.name)
                continue
            name = child.name[: -len(".in")] if child.name.endswith(".in") else child.name
            text = child.read_text(encoding="utf-8").replace("@RECIPE@", str(recipe))
            path = dest / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                changed = True

    copy(source, target)
    return changed


def give_release_to(release: Path, name: str) -> None:
    """As root, the release is built by the software user `name`: let it write egg-info."""
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return
    for path in [release, *release.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
