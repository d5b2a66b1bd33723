"""The `slapos` console script: answers `--version` before importing anything else."""

from __future__ import annotations

import sys


def version_line() -> str:
    from slapos.version import __version__

    v = sys.version_info
    return f"slapos {__version__} (Python {v.major}.{v.minor}.{v.micro})"


def console_main() -> int:
    if sys.argv[1:] == ["--version"]:  # the most common probe of all: answer it at once
        sys.stdout.write(version_line() + "\n")
        return 0
    from slapos.cli.main import main

    return main()
