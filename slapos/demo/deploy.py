"""The demo's run: a node and a local master in DIR, the demo release supplied, requested,
built and deployed, its page fetched. Each step runs the same code as the `slapos` command
it names, in this process."""

from __future__ import annotations

import copy
import io
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from slapos.cli.configure.local_setup import COMPUTER_ID
from slapos.config import IniFile
from slapos.demo import preflight, venv
from slapos.demo.layout import (
    DEFAULT_PORT,
    SERVICE_NAME,
    SOFTWARE_NAME,
    DemoError,
    DemoLayout,
    Users,
)
from slapos.demo.release import give_release_to, materialise_release
from slapos.demo.summary import summary
from slapos.errors import ConfigError
from slapos.system import Clock, wait_until

if TYPE_CHECKING:
    from slapos.cli.configure.local_setup import LocalSettings
    from slapos.cli.context import Context


@dataclass(frozen=True)
class Steps:
    """Runs `slapos` commands in this process, each announced by a `==> title` line.

    What they print for a script (request's state and connection parameters, empty yet)
    is not for the reader of the demo: their stdout is set aside; logs go to stderr."""

    out: TextIO
    ctx: Context

    def __call__(self, title: str, argv: list[str], ok: tuple[int, ...] = (0,)) -> int:
        from slapos.cli.main import main

        self.out.write(f"==> {title}\n")
        self.out.flush()
        rc = main(argv, self.ctx)
        if rc not in ok:
            raise DemoError(f"{title} failed (slapos {' '.join(argv)}: exit {rc})")
        return rc

    def until(
        self, title: str, argv: list[str], ok: tuple[int, ...], done: Callable[[], bool], tries: int
    ) -> bool:
        """Run the step again until `done()`, at most `tries` times; whether it got done."""
        for _ in range(tries):
            self(title, argv, ok)
            if done():
                return True
        return False


def run(
    root: Path,
    out: TextIO,
    users: Users | None = None,
    invoked_as: str = "",
    demo_venv: Path | None = None,
    port: int | None = None,
) -> str:
    """The whole demo; returns the URL of the running demo page.

    `demo_venv`: the virtualenv dev.sh made for this demo's Python, told that DIR uses it.
    `port`: the local master's, for a new DIR (see _choose_port)."""
    from slapos.cli.context import Context

    users = users or Users()
    invoked_as = invoked_as or f"{sys.executable} -m slapos.demo"
    layout = DemoLayout(root.absolute())
    ctx = Context.from_process()
    if ctx.is_root:
        preflight.check_reachable(layout.root, users)
        preflight.check_users_free(layout.root, users, invoked_as)
    layout.root.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.root, 0o755)  # partition users (when run as root) go through it
    if demo_venv is not None:
        venv.record_user(demo_venv, layout.root)
    settings = layout.settings(_choose_port(layout, port), ctx.is_root, users)
    set_up(layout, settings, ctx, out)
    steps = Steps(out, _quiet(ctx))
    client = str(settings.client_config)
    supply = ["supply", layout.software_url, COMPUTER_ID, "--cfg", client]
    steps("supplying the demo software release", supply)
    # --quiet: its report (connection parameters: none yet) is for scripts; --state
    # started: a demo stopped by hand (panel, slapos request) is started again, as a
    # request without a state keeps the stored one (protocol.md §8.14)
    request = ["request", "--quiet", "--state", "started", SOFTWARE_NAME, layout.software_url]
    steps("requesting an instance of it", [*request, "--cfg", client], ok=(0, 2))
    url, page = build_and_deploy(steps, settings, layout.software_url, ctx.clock)
    out.write(f"==> the demo instance answers at {url}\n\n")
    out.writelines(f"    {line}\n" for line in page.strip().splitlines())
    out.write("\n" + summary(layout, url, settings.master_url, invoked_as, users))
    return url


def set_up(layout: DemoLayout, settings: LocalSettings, ctx: Context, out: TextIO) -> None:
    """`configure local` in DIR (again: it reuses what is there), and the release copied."""
    from slapos.cli.configure.local_setup import configure_local
    from slapos.cli.main import main
    from slapos.format.boot import remove_timestamps

    out.write(f"==> setting up a node and a local master in {layout.root}\n")
    out.flush()
    if settings.instance_root.is_dir() and not service_running(settings.instance_root):
        # supervisord stopped (shut down, or the machine rebooted), or started again without
        # the partitions' services (`slapos node status` after a shutdown launches it so):
        # like `node boot`, have node instance process every partition again, which starts
        # their services
        remove_timestamps(settings.instance_root, "slappart")
    node = str(settings.node_config)
    configure_local(
        settings,
        ctx.runner,
        lambda: main(["node", "format", "--cfg", node, "--now"], ctx),
        reuse=True,
    )
    materialise_release(layout.release)
    if settings.privileged:
        give_release_to(layout.release, settings.software_user)


def build_and_deploy(
    steps: Steps, settings: LocalSettings, software_url: str, clock: Clock
) -> tuple[str, str]:
    """node software, node instance until the instance publishes its URL; (URL, page)."""
    from slapos.format.boot import remove_timestamps
    from slapos.grid.release import COMPLETED
    from slapos.grid.utils import software_hash

    node = ["--cfg", str(settings.node_config)]
    # judged by the demo's release alone: another release a user supplied to this node may
    # fail its build (exit 1) without failing the demo (--only-sr would force a rebuild)
    built = settings.software_root / software_hash(software_url) / COMPLETED
    build = "building it (slapos node software)"
    if not steps.until(build, ["node", "software", *node], (0, 1), built.exists, tries=3):
        raise DemoError(f"node software failed: see the logs under {settings.software_root}")
    published: list[str] = []

    def publishes() -> bool:
        url = connection_url(settings.client_config, software_url)
        published.extend([url] if url else [])
        return bool(url)

    deploy = "deploying it (slapos node instance)"
    if not steps.until(deploy, ["node", "instance", *node], (0, 1, 2), publishes, tries=5):
        raise DemoError(
            f"the instance did not publish its address: see {settings.instance_root}/.slapgrid "
            "and the partition logs"
        )
    url = published[0]
    try:
        return url, fetch(url, clock, timeout=15)
    except DemoError:
        # its service is not running although the partition is up to date (supervisord
        # was restarted): process the partition again, which starts it
        remove_timestamps(settings.instance_root, "slappart")
        start = "starting its service (slapos node instance)"
        steps(start, ["node", "instance", *node], ok=(0, 1, 2))
        return url, fetch(url, clock)


def connection_url(client_config: Path, software_url: str) -> str | None:
    """The `url` the demo instance published, once it has."""
    from slapos.config import load_client_config
    from slapos.slap import ResourceNotReady
    from slapos.slap.entry import connect

    connection = connect(load_client_config(client_config).master)
    try:
        instance = connection.registerOpenOrder().request(
            software_url, SOFTWARE_NAME, partition_parameter_kw={}, state="started"
        )
        value = instance.getConnectionParameterDict().get("url")
    except ResourceNotReady:
        return None
    return str(value) if value else None


def fetch(url: str, clock: Clock, timeout: float = 60.0) -> str:
    """The page at `url`, asked again until it answers or `timeout` seconds have passed."""
    page: list[str] = []
    failure: list[str] = ["no answer yet"]

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                page.append(answer.read().decode("utf-8", "replace"))
            return True
        except (urllib.error.URLError, OSError) as exc:
            failure[:] = [str(exc)]
            return False

    if not wait_until(answers, timeout, clock=clock, pause=0.5):
        raise DemoError(f"the demo page {url} does not answer: {failure[0]}")
    return page[0]


def service_running(instance_root: Path) -> bool:
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


def _quiet(ctx: Context) -> Context:
    """`ctx` with its stdout set aside (see Steps)."""
    quiet = copy.copy(ctx)
    quiet.stdout = io.StringIO()
    return quiet


def _choose_port(layout: DemoLayout, wanted: int | None = None) -> int:
    """The port already configured, else `wanted`, else 8080 when free, else any free port.

    A DIR set up before keeps its port: asking for another one is an error (its
    configuration, supervisord and the URLs printed all name the first one)."""
    proxy_config = layout.settings().proxy_config
    if proxy_config.exists():
        ini = IniFile.read(proxy_config)
        port = ini.get_int("slapproxy", "port", DEFAULT_PORT) or DEFAULT_PORT
        if wanted is not None and wanted != port:
            raise ConfigError(
                f"{layout.root} was set up with port {port} ({proxy_config}); run it without "
                f"--port, or with --destroy first for port {wanted}"
            )
        return port
    if wanted is not None:
        return wanted
    if _port_is_free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
