"""The README demo: a whole SlapOS on this machine, one command, no root needed.

`python -m slapos.demo [DIR]` (or `./dev.sh demo [DIR]`) sets up, in DIR (default ./demo):
a node and a local proxy (`slapos configure local`), the demo software release shipped in
this package (software/), supplies and requests it, builds it (`node software`), deploys it
(`node instance`), and prints the address of the web page the instance serves, after
fetching it, then where everything is and what to try next. Running it again reuses what
is there. `--stop` stops its processes (the node's supervisord, hence the local master and
the instance) and keeps DIR; `--destroy` stops everything and removes DIR and the users the
demo created. Any `slapos node` command on the demo's node (`node status` too) starts its
supervisord, and with it the local master, again.

The steps run the same code as the `slapos` commands, in this process.
"""

from __future__ import annotations

import argparse
import configparser
import fnmatch
import io
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from slapos.errors import ExitCode, SlapOSError

if TYPE_CHECKING:
    from slapos.system import Runner

log = logging.getLogger(__name__)

SOFTWARE_NAME = "demo"  # the requested instance's name
PARTITIONS = 3
SERVICE_NAME = "demo-web"  # the demo release's service (etc/service/demo-web in its partition)
#: What the demo makes in DIR (configure local, node format, the proxy, the release):
#: all that --destroy removes.
DEMO_ENTRIES = (
    "etc", "log", "srv", "soft", "software-release", "var", "slapos.xml*", "slapproxy.db*",
    "slapformat-definition.cfg",
)  # fmt: skip
DEFAULT_PORT = 8080


class DemoError(SlapOSError):
    """A step of the demo failed; the message says which and where its log is."""


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def node_config(self) -> Path:
        return self.etc / "slapos.cfg"

    @property
    def client_config(self) -> Path:
        return self.etc / "slapos-client.cfg"

    @property
    def proxy_config(self) -> Path:
        return self.etc / "slapos-proxy.cfg"

    @property
    def instance_root(self) -> Path:
        return self.root / "srv"

    @property
    def software_root(self) -> Path:
        return self.root / "soft"

    @property
    def release(self) -> Path:
        return self.root / "software-release"

    @property
    def software_url(self) -> str:
        return str(self.release / "software.cfg")


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


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_port(layout: DemoLayout) -> int:
    """The port already configured, else 8080 when free, else any free port."""
    if layout.proxy_config.exists():
        parser = configparser.ConfigParser()
        parser.read(layout.proxy_config)
        return parser.getint("slapproxy", "port", fallback=DEFAULT_PORT)
    if _port_is_free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(url: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return str(answer.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                raise DemoError(f"the demo page {url} does not answer: {exc}") from None
            time.sleep(0.5)


def connection_url(master_url: str, software_url: str) -> str | None:
    """The `url` the demo instance published, once it has."""
    from slapos import slap

    connection = slap.slap()
    connection.initializeConnection(master_url)
    try:
        instance = connection.registerOpenOrder().request(
            software_url, SOFTWARE_NAME, partition_parameter_kw={}, state="started"
        )
        value = instance.getConnectionParameterDict().get("url")
    except slap.ResourceNotReady:
        return None
    return str(value) if value else None


@dataclass(frozen=True)
class Users:
    """The users node format creates when the demo runs as root."""

    base_name: str = "slapuser"
    software: str = "slapsoft"

    def options(self) -> str:
        """The command-line options that choose these names (none for the defaults)."""
        if self == Users():
            return ""
        return f" --user-base-name {self.base_name} --software-user {self.software}"

    def names(self) -> list[str]:
        return [self.software, *(f"{self.base_name}{i}" for i in range(PARTITIONS))]


def check_reachable(root: Path, users: Users) -> None:
    """As root, partition users run this Python and work under `root`: can others reach both?

    Read from the permission bits for "others" (the partition users are in no group of
    root's). Raises a one-line DemoError saying what is closed and what to do.
    """
    import sysconfig

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
    import pwd

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
    import stat

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


def offer_panel(master_url: str) -> str | None:
    """The proxy's web panel, when this proxy has one."""
    url = f"{master_url}/panel/"
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return url if answer.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _slapos_command() -> str:
    """How to run this installation's `slapos` (it need not be on PATH)."""
    script = Path(sys.executable).parent / "slapos"
    if script.exists():
        return str(script)
    return f"{sys.executable} -m slapos"


def summary(layout: DemoLayout, url: str, master_url: str, invoked_as: str, users: Users) -> str:
    slapos = _slapos_command()
    client, node = layout.client_config, layout.node_config
    lines = [f"Demo service:   {url}"]
    panel = offer_panel(master_url)
    if panel:
        lines.append(f"Panel:          {panel}")
    lines += [
        f"Local master:   {master_url}",
        f"Configuration:  {node} (node), {client} (client),",
        f"                {layout.proxy_config} (master)",
        "Next commands (slapos is not on PATH: use its full path, or first run "
        f". {Path(sys.executable).parent}/activate):",
        f"  {slapos} service list --cfg {client}",
        f"  {slapos} service info {SOFTWARE_NAME} --cfg {client}",
        f"  {slapos} node status --cfg {node}",
        f"Run again (safe):  {invoked_as} {layout.root}{users.options()}",
        f"Stop everything:   {invoked_as} {layout.root} --stop",
        "                   (keeps DIR; any `slapos node` command, status too, starts the",
        "                   node's supervisord and the local master again)",
        f"Remove everything: {invoked_as} {layout.root} --destroy",
    ]
    return "\n".join(lines) + "\n"


def run(root: Path, out: TextIO, users: Users | None = None, invoked_as: str = "") -> str:
    """The whole demo; returns the URL of the running demo page."""
    from slapos.cli._common import Context
    from slapos.cli.configure.local_setup import LocalSettings, configure_local
    from slapos.cli.main import main
    from slapos.format.boot import remove_timestamps

    users = users or Users()
    invoked_as = invoked_as or f"{sys.executable} -m slapos.demo"
    layout = DemoLayout(root.absolute())
    ctx = Context.from_process()
    privileged = os.geteuid() == 0
    if privileged:
        check_reachable(layout.root, users)
        check_users_free(layout.root, users, invoked_as)
    layout.root.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.root, 0o755)  # partition users (when run as root) go through it
    port = _choose_port(layout)
    settings = LocalSettings(
        config_dir=layout.etc,
        instance_root=layout.instance_root,
        software_root=layout.software_root,
        home=layout.root,
        partition_amount=PARTITIONS,
        listen_port=port,
        privileged=privileged,
        user_base_name=users.base_name,
        software_user=users.software,
    )
    node, client = str(layout.node_config), str(layout.client_config)

    # what request prints for a script (the instance's state and connection parameters,
    # empty yet) is not for the reader of the demo: its commands' stdout is set aside
    quiet = Context(
        stdout=io.StringIO(),
        stderr=ctx.stderr,
        stdin=ctx.stdin,
        environ=ctx.environ,
        euid=ctx.euid,
        runner=ctx.runner,
        clock=ctx.clock,
    )

    def step(title: str, *argv: str, ok: tuple[int, ...] = (0,)) -> int:
        out.write(f"==> {title}\n")
        out.flush()
        rc = main(list(argv), quiet)
        if rc not in ok:
            raise DemoError(f"{title} failed (slapos {' '.join(argv)}: exit {rc})")
        return rc

    out.write(f"==> setting up a node and a local master in {layout.root}\n")
    out.flush()
    if layout.instance_root.is_dir() and not _demo_service_running(layout.instance_root):
        # supervisord stopped (shut down, or the machine rebooted), or started again without
        # the partitions' services (`slapos node status` after a shutdown launches it so):
        # like `node boot`, have node instance process every partition again, which starts
        # their services
        remove_timestamps(layout.instance_root, "slappart")
    configure_local(
        settings,
        ctx.runner,
        lambda: main(["node", "format", "--cfg", node, "--now"], ctx),
        reuse=True,
    )
    materialise_release(layout.release)
    if privileged:
        _give_release_to_software_user(layout.release, users.software)
    step(
        "supplying the demo software release",
        "supply",
        layout.software_url,
        "local_computer",
        "--cfg",
        client,
    )
    step(
        "requesting an instance of it",
        "request",
        "--quiet",  # its report (connection parameters: none yet) is for scripts and rerun
        "--state",  # a demo stopped by hand (panel, slapos request) is started again: a
        "started",  # request without a state keeps the stored one (protocol.md §8.14)
        SOFTWARE_NAME,
        layout.software_url,
        "--cfg",
        client,
        ok=(0, 2),
    )
    url, page = _build_and_deploy(step, layout, settings.master_url)
    out.write(f"==> the demo instance answers at {url}\n\n")
    for line in page.strip().splitlines():
        out.write(f"    {line}\n")
    out.write("\n" + summary(layout, url, settings.master_url, invoked_as, users))
    return url


def _demo_service_running(instance_root: Path) -> bool:
    """supervisord runs the demo's service (and every copy of it it knows)."""
    from slapos.grid.supervisor import SupervisorError, connect, running_state

    if running_state(instance_root) != "RUNNING":
        return False
    try:
        with connect(instance_root, timeout=5) as sv:
            processes = sv.all_processes()
    except SupervisorError:
        return False
    states = [p["statename"] for p in processes if str(p["name"]).startswith(SERVICE_NAME)]
    return bool(states) and all(state in ("RUNNING", "STARTING") for state in states)


def _build_and_deploy(
    step: Callable[..., int], layout: DemoLayout, master_url: str
) -> tuple[str, str]:
    """node software, node instance until the instance publishes its URL; (URL, page)."""
    from slapos.format.boot import remove_timestamps

    node = str(layout.node_config)
    from slapos.grid.release import COMPLETED
    from slapos.grid.utils import software_hash

    # judged by the demo's release alone: another release a user supplied to this node may
    # fail its build (exit 1) without failing the demo (--only-sr would force a rebuild)
    built = layout.software_root / software_hash(layout.software_url) / COMPLETED
    for attempt in range(3):
        step("building it (slapos node software)", "node", "software", "--cfg", node, ok=(0, 1))
        if built.exists():
            break
        if attempt == 2:
            raise DemoError(f"node software failed: see the logs under {layout.software_root}")
    url = None
    for _ in range(5):
        step("deploying it (slapos node instance)", "node", "instance", "--cfg", node, ok=(0, 1, 2))
        url = connection_url(master_url, layout.software_url)
        if url:
            break
    if not url:
        raise DemoError(
            f"the instance did not publish its address: see {layout.instance_root}/.slapgrid "
            "and the partition logs"
        )
    try:
        page = _fetch(url, timeout=15)
    except DemoError:
        # its service is not running although the partition is up to date (supervisord
        # was restarted): process the partition again, which starts it
        remove_timestamps(layout.instance_root, "slappart")
        step(
            "starting its service (slapos node instance)",
            "node",
            "instance",
            "--cfg",
            node,
            ok=(0, 1, 2),
        )
        page = _fetch(url)
    return url, page


def stop(root: Path, out: TextIO) -> None:
    """Stop the demo's processes (its supervisord: the local master, the instance)."""
    from slapos.grid.supervisor import shutdown

    layout = DemoLayout(root.absolute())
    if not layout.node_config.exists():
        raise DemoError(f"{layout.root} is not a demo directory (no etc/slapos.cfg)")
    out.write("==> stopping the demo's processes (its supervisord, the local master)\n")
    out.flush()
    shutdown(layout.instance_root)
    out.write(
        "The demo is stopped. Run the demo again to start it; any `slapos node` command on "
        "its node (status too) starts its supervisord and the local master again.\n"
    )


def destroy(root: Path, out: TextIO, runner: Runner) -> None:
    """Stop the demo's processes, delete the users it created and remove `root`."""
    import pwd
    import shutil

    from slapos.grid.supervisor import shutdown

    layout = DemoLayout(root.absolute())
    if not layout.root.exists():
        out.write(f"nothing to remove: {layout.root} does not exist\n")
        return
    if not layout.node_config.exists() and any(layout.root.iterdir()):
        raise DemoError(
            f"{layout.root} is not a demo directory (no etc/slapos.cfg): not removing it"
        )
    if layout.instance_root.is_dir():
        out.write("==> stopping the demo's processes (its supervisord, the local master)\n")
        out.flush()
        shutdown(layout.instance_root)
    if os.geteuid() == 0:
        # the users whose home is inside the demo: its software user and partition users
        inside = [u for u in pwd.getpwall() if Path(u.pw_dir).is_relative_to(layout.root)]
        for user in inside:
            out.write(f"==> deleting user {user.pw_name}\n")
            out.flush()
            runner.run(["pkill", "-KILL", "-u", user.pw_name])
            done = runner.run(["userdel", user.pw_name])
            if done.returncode not in (0, 6):  # 6: already gone
                raise DemoError(f"userdel {user.pw_name} failed: {done.output.strip()}")
            runner.run(["groupdel", user.pw_name])
    out.write(f"==> removing {layout.root}\n")
    for entry in sorted(layout.root.iterdir()):
        if not any(fnmatch.fnmatch(entry.name, pattern) for pattern in DEMO_ENTRIES):
            continue  # not the demo's: DIR may be a directory of the user's own
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    left = sorted(entry.name for entry in layout.root.iterdir())
    if left:
        out.write(f"The demo is gone; {layout.root} is kept for what is not the demo's: "
                  f"{', '.join(left)}\n")  # fmt: skip
        return
    layout.root.rmdir()
    out.write("The demo is gone.\n")


def _give_release_to_software_user(release: Path, name: str) -> None:
    """As root, the release is built by the software user: let it write egg-info there."""
    import pwd

    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return
    for path in [release, *release.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m slapos.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", nargs="?", default="demo", help="where (default: ./demo)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--stop",
        action="store_true",
        help="stop the demo's processes (supervisord, the local master), keep DIR",
    )
    action.add_argument(
        "--destroy",
        action="store_true",
        help="stop everything, delete the users the demo created, remove DIR",
    )
    parser.add_argument(
        "--user-base-name",
        default="slapuser",
        help="as root: partition N runs as user USER_BASE_NAMEN (default: %(default)s)",
    )
    parser.add_argument(
        "--software-user",
        default="slapsoft",
        help="as root: the user that builds the release (default: %(default)s)",
    )
    # how the user started us, for the hints printed at the end (./dev.sh passes its own)
    parser.add_argument("--invoked-as", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help (0), or a usage error argparse printed (2)
        return ExitCode.OK if not exc.code else ExitCode.USAGE
    root = Path(args.dir)
    try:
        if args.destroy:
            from slapos.system import SubprocessRunner

            destroy(root, sys.stdout, SubprocessRunner())
        elif args.stop:
            stop(root, sys.stdout)
        else:
            run(root, sys.stdout, Users(args.user_base_name, args.software_user), args.invoked_as)
    except SlapOSError as exc:
        action = "--destroy " if args.destroy else "--stop " if args.stop else ""
        sys.stderr.write(f"demo {action}failed: {exc}\n")
        return exc.exit_code
    except OSError as exc:
        sys.stderr.write(f"demo failed: {exc}\n")
        return ExitCode.FAILURE
    except KeyboardInterrupt:
        return 130
    return 0
