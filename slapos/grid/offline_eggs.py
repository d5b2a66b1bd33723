"""Run a release's `bin/buildout` for an instance so that, offline, it sees the software's eggs.

    python /path/to/slapos/grid/offline_eggs.py BIN_BUILDOUT ARGS...

(run as a file, not with -m: the release's interpreter need not import our package)

zc.buildout 5+ installs each egg as a `<name>-<version>-<tags>.egg` directory holding a
`.dist-info` (not the `EGG-INFO` of older eggs). Offline, it looks for the recipes a profile
names with `pkg_resources.Environment(path)` over the eggs directory, which only recognises
`EGG-INFO` eggs; the directories it would scan for the new layout are those of the
*destination*, and offline there is none. So an instance profile that uses any recipe egg
the software installed (the ordinary way: every instance does) fails with "We don't have a
distribution for ...". zc.buildout 6.0.1 is the latest release and still does this.

This runner makes `zc.buildout.easy_install.Installer` also scan, when it has no
destination, the egg directories of its path that hold a `.dist-info`, which is what it
does for its destination. It patches the module when the script imports it (so the
zc.buildout the release's script chose is the one patched), then runs the script as
`__main__`. Nothing else changes: no download, no write outside the partition.

Imports only the standard library at module level.
"""

from __future__ import annotations

import glob
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

TARGET = "zc.buildout.easy_install"


def egg_directories(paths: Sequence[str]) -> list[str]:
    """The `*.egg` directories (zc.buildout 5+ layout: a .dist-info inside) under `paths`."""
    found = {
        os.path.dirname(info)
        for p in paths
        for info in glob.glob(os.path.join(p, "*.egg", "*.dist-info"))
    }
    return sorted(found)


def patch(module: ModuleType) -> None:
    """Make `module.Installer` see new-layout eggs of its path when it has no destination."""
    installer: Any = module.Installer
    original = installer._make_env

    def _make_env(self: Any) -> Any:
        env = original(self)
        if self._dest is None:
            env.scan(egg_directories(self._path))
        return env

    installer._make_env = _make_env


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of zc.buildout.easy_install to patch it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader: Any = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            patch(module)

        loader.exec_module = exec_and_patch
        return spec


def main(argv: Sequence[str]) -> None:
    script, *args = argv
    # as `python script`: the script's directory first, not this file's
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    sys.meta_path.insert(0, _PatchOnImport())
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
