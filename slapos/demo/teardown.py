"""`--stop` and `--destroy`: the demo's processes stopped; its users and files removed."""

from __future__ import annotations

import fnmatch
import os
import pwd
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from slapos.demo import venv
from slapos.demo.layout import DEMO_ENTRIES, DemoError, DemoLayout

if TYPE_CHECKING:
    from slapos.system import Runner


def stop(root: Path, out: TextIO) -> None:
    """Stop the demo's processes (its supervisord: the local master, the instance)."""
    layout = DemoLayout(root.absolute())
    if not layout.node_config.exists():
        raise DemoError(f"{layout.root} is not a demo directory (no etc/slapos.cfg)")
    _shut_down(layout, out)
    out.write(
        "The demo is stopped. Run the demo again to start it; any `slapos node` command on "
        "its node (status too) starts its supervisord and the local master again.\n"
    )


def destroy(root: Path, out: TextIO, runner: Runner, demo_venv: Path | None = None) -> None:
    """Stop the demo's processes, delete the users it created and remove what it made in
    `root` (`root` too when nothing else is left); `demo_venv` is told `root` is gone."""
    layout = DemoLayout(root.absolute())
    if not layout.root.exists():
        out.write(f"nothing to remove: {layout.root} does not exist\n")
    elif not layout.node_config.exists() and any(layout.root.iterdir()):
        raise DemoError(
            f"{layout.root} is not a demo directory (no etc/slapos.cfg): not removing it"
        )
    else:
        if layout.instance_root.is_dir():
            _shut_down(layout, out)
        if os.geteuid() == 0:
            _delete_users(layout.root, runner, out)
        _remove_files(layout.root, out)
    if demo_venv is not None:
        left = venv.forget_user(demo_venv, layout.root)
        if left:
            others = ", ".join(map(str, left))
            out.write(f"Keeping {demo_venv}: the Python of the demo in {others}\n")


def _shut_down(layout: DemoLayout, out: TextIO) -> None:
    from slapos.grid.supervisor import shutdown

    out.write("==> stopping the demo's processes (its supervisord, the local master)\n")
    out.flush()
    shutdown(layout.instance_root)


def _delete_users(root: Path, runner: Runner, out: TextIO) -> None:
    """The users whose home is inside the demo: its software user and partition users."""
    for user in [u for u in pwd.getpwall() if Path(u.pw_dir).is_relative_to(root)]:
        out.write(f"==> deleting user {user.pw_name}\n")
        out.flush()
        runner.run(["pkill", "-KILL", "-u", user.pw_name])
        done = runner.run(["userdel", user.pw_name])
        if done.returncode not in (0, 6):  # 6: already gone
            raise DemoError(f"userdel {user.pw_name} failed: {done.output.strip()}")
        runner.run(["groupdel", user.pw_name])


def _remove_files(root: Path, out: TextIO) -> None:
    out.write(f"==> removing {root}\n")
    for entry in sorted(root.iterdir()):
        if not any(fnmatch.fnmatch(entry.name, pattern) for pattern in DEMO_ENTRIES):
            continue  # not the demo's: DIR may be a directory of the user's own
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    left = sorted(entry.name for entry in root.iterdir())
    if left:
        kept = ", ".join(left)
        out.write(f"The demo is gone; {root} is kept for what is not the demo's: {kept}\n")
        return
    root.rmdir()
    out.write("The demo is gone.\n")
