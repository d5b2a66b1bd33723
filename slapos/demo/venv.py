"""The demos that use a virtualenv dev.sh made for them.

As root, from a clone other users cannot enter, `./dev.sh demo` installs slapos into a
virtualenv they can read (/opt/slapos-dev/demo-venv) and runs the demo from it: the demo's
supervisord, local master and partitions run that Python. Several demo directories may
use it (with users of their own); each is listed in its USERS_FILE, and --destroy takes
its directory out. dev.sh removes the virtualenv once no demo is listed.
"""

from __future__ import annotations

from pathlib import Path

from slapos.system import write_file_atomic

#: In the virtualenv: one demo directory per line (dev.sh reads it too).
USERS_FILE = ".slapos-demo-dirs"


def users(venv: Path) -> list[Path]:
    """The demo directories listed as using `venv` that still hold a demo."""
    try:
        text = (venv / USERS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    listed = dict.fromkeys(Path(line) for line in text.splitlines() if line.strip())
    return [root for root in listed if (root / "etc" / "slapos.cfg").exists()]


def record_user(venv: Path, root: Path) -> None:
    """`root` runs a demo from `venv`."""
    _write(venv, [*(r for r in users(venv) if r != root), root])


def forget_user(venv: Path, root: Path) -> list[Path]:
    """`root` is no demo any more: the demos that still use `venv`."""
    left = [r for r in users(venv) if r != root]
    _write(venv, left)
    return left


def _write(venv: Path, roots: list[Path]) -> None:
    write_file_atomic(venv / USERS_FILE, "".join(f"{root}\n" for root in roots))
