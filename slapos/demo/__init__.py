"""The README demo: a whole SlapOS on this machine, one command, no root needed.

`python -m slapos.demo [DIR]` (or `./dev.sh demo [DIR]`) sets up, in DIR (default ./demo):
a node and a local proxy (`slapos configure local`), the demo software release shipped in
this package (software/), supplies and requests it, builds it (`node software`), deploys it
(`node instance`), and prints the address of the web page the instance serves, after
fetching it. Running it again reuses what is there.

The steps run the same code as the `slapos` commands, in this process.
"""

from __future__ import annotations

import configparser
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

from slapos.errors import SlapOSError

log = logging.getLogger(__name__)

SOFTWARE_NAME = "demo"  # the requested instance's name
PARTITIONS = 3
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


def run(root: Path, out: TextIO) -> str:
    """The whole demo; returns the URL of the running demo page."""
    from slapos.cli._common import Context
    from slapos.cli.main import main
    from slapos.format.boot import remove_timestamps
    from slapos.format.configure_local import LocalSettings, configure_local
    from slapos.grid.supervisor import running_state

    layout = DemoLayout(root.absolute())
    layout.root.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.root, 0o755)  # partition users (when run as root) go through it
    ctx = Context.from_process()
    privileged = os.geteuid() == 0
    port = _choose_port(layout)
    settings = LocalSettings(
        config_dir=layout.etc,
        instance_root=layout.instance_root,
        software_root=layout.software_root,
        home=layout.root,
        partition_amount=PARTITIONS,
        listen_port=port,
        privileged=privileged,
    )
    node, client = str(layout.node_config), str(layout.client_config)

    def step(title: str, *argv: str, ok: tuple[int, ...] = (0,)) -> int:
        out.write(f"==> {title}\n")
        out.flush()
        rc = main(list(argv), ctx)
        if rc not in ok:
            raise DemoError(f"{title} failed (slapos {' '.join(argv)}: exit {rc})")
        return rc

    out.write(f"==> setting up a node and a local master in {layout.root}\n")
    out.flush()
    if layout.instance_root.is_dir() and running_state(layout.instance_root) != "RUNNING":
        # supervisord stopped (shut down, or the machine rebooted): like `node boot`, have
        # node instance process every partition again, which starts their services
        remove_timestamps(layout.instance_root, "slappart")
    configure_local(
        settings,
        ctx.runner,
        lambda: main(["node", "format", "--cfg", node, "--now"], ctx),
        reuse=True,
    )
    materialise_release(layout.release)
    if privileged:
        _give_release_to_software_user(layout.release)
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
        SOFTWARE_NAME,
        layout.software_url,
        "--cfg",
        client,
        ok=(0, 2),
    )
    for attempt in range(3):
        if (
            step("building it (slapos node software)", "node", "software", "--cfg", node, ok=(0, 1))
            == 0
        ):
            break
        if attempt == 2:
            raise DemoError(f"node software failed: see the logs under {layout.software_root}")
    url = None
    for _ in range(5):
        step("deploying it (slapos node instance)", "node", "instance", "--cfg", node, ok=(0, 1, 2))
        url = connection_url(settings.master_url, layout.software_url)
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
    out.write(f"==> the demo instance answers at {url}\n\n")
    for line in page.strip().splitlines():
        out.write(f"    {line}\n")
    out.write(
        f"\nDemo service: {url}\n"
        f"Client commands: slapos service list --cfg {client}\n"
        f"Stop everything: slapos node supervisorctl --cfg {node} shutdown\n"
        f"Run again (safe): python -m slapos.demo {layout.root}\n"
    )
    return url


def _give_release_to_software_user(release: Path) -> None:
    """As root, the release is built by the software user: let it write egg-info there."""
    import pwd

    try:
        user = pwd.getpwnam("slapsoft")
    except KeyError:
        return
    for path in [release, *release.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(f"usage: python -m slapos.demo [DIR]\n\n{__doc__}")
        return 0
    root = Path(args[0] if args else "demo")
    try:
        run(root, sys.stdout)
    except SlapOSError as exc:
        sys.stderr.write(f"demo failed: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
