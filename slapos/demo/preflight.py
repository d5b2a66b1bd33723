"""What the demo checks as root before it starts anything: that its partition users can
reach its Python and DIR, and that those users are new or this demo's own."""

from __future__ import annotations

import pwd
import stat
import sys
import sysconfig
from pathlib import Path

from slapos.demo.layout import PARTITIONS, DemoError, Users


def check_reachable(root: Path, users: Users) -> None:
    """As root, partition users run this Python and work under `root`: can others reach both?

    Read from the permission bits for "others" (the partition users are in no group of
    root's). Raises a one-line DemoError saying what is closed and what to do.
    """
    # the interpreter first: a clone in root's home closes both, and the remedy is the same
    what = f"{sys.executable} (and the slapos it runs)"
    remedy = (
        "run ./dev.sh demo, which installs slapos where they can read it, or clone "
        "slapos where other users can read it (e.g. under /opt or /srv)"
    )
    closed = None
    for needed in (
        Path(sys.executable),
        Path(sys.executable).resolve(),
        Path(sysconfig.get_paths()["purelib"]),
        Path(__file__).resolve(),
    ):
        closed = _closed_on_the_way(needed)
        if closed is not None:
            break
    else:
        closed = _closed_on_the_way(root)
        if closed is None:
            return
        what = f"the demo directory {root}"
        remedy = "give the demo a DIR they can reach (./dev.sh demo /srv/slapos-demo)"
    # a directory needs only to be traversed (o+x: its listing stays private), a file read
    mode = "o+x" if closed.is_dir() else "o+r"
    raise DemoError(
        f"as root the demo's partitions run as users {users.software} and "
        f"{users.base_name}0..{PARTITIONS - 1}, who cannot reach {what} ({closed} is "
        f"closed to other users): {remedy}, or let them through with: chmod {mode} {closed}"
    )


def check_users_free(root: Path, users: Users, invoked_as: str) -> None:
    """As root, the demo's users must be new or this demo's own (their homes under `root`).

    Users of another demo or node (one root demo per machine) would make `node format`
    refuse once the local master runs; say it first, in one line, with nothing started.
    """
    for name in users.names():
        try:
            home = Path(pwd.getpwnam(name).pw_dir)
        except KeyError:
            continue
        if home.is_relative_to(root):
            continue
        # a demo's users live in DIR/soft and DIR/srv/slappartN
        other = home.parent if home.name == "soft" else home.parent.parent
        if (other / "etc" / "slapos.cfg").exists():
            remedy = f"remove that demo first ({invoked_as} {other} --destroy)"
        else:
            remedy = "it belongs to another node"
        raise DemoError(
            f"as root, one demo per machine: user {name} already exists (home {home}); "
            f"{remedy}, or give this demo other users (--user-base-name NAME "
            "--software-user NAME)"
        )


def _closed_on_the_way(path: Path) -> Path | None:
    """The first existing directory or file on the way to `path` that others cannot use."""
    for step in [*reversed(path.absolute().parents), path.absolute()]:
        try:
            mode = step.stat().st_mode
        except FileNotFoundError:
            return None  # what does not exist yet is made reachable by the demo
        except OSError:
            return step
        wanted = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
        if not mode & wanted:
            return step
    return None
