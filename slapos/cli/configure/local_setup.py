"""What `slapos configure local` sets up: one machine as a whole SlapOS, driven by a local
proxy. The command (local.py) and the demo call it.

Writes, in self-contained directories, a node configuration (slapos.cfg), a proxy
configuration (slapos-proxy.cfg) and a client configuration (slapos-client.cfg); puts the
proxy under the node's supervisord (the one that runs the partitions); starts it; formats
the node, which posts the partitions to the proxy.

Layouts:

* root: node format creates the partition users; on an interface other than lo it also
  configures addresses, taps and routes (upstream's layout);
* root on lo (the default interface): users, but no network change: lo has no global IPv6,
  and every 127.0.0.0/8 address is usable on lo without being configured, so partitions
  get addresses of 127.10.0.0/16 (and ::1);
* unprivileged: no user, no network change (alter_user = alter_network = false,
  root_check = false), partitions owned by the caller, addresses as on lo; everything lives
  under the directories given.

Without network changes node format gives partitions no address (upstream's rule), so the
last two layouts list them in a slapformat definition file (`input_definition_file`, the
way upstream's standalone node does): the node address 127.0.0.1, and partition i gets the
(i+1)-th address of the network and ::1; without root, the partitions' user is the caller.
Upstream's node format reads the same files.

It sits above format/ and grid/ (it drives both, and starts the proxy under the node's
supervisord), so it lives with the command, not in format/. Imported only when the command
runs: `run_format` comes in as a function, so that the demo formats with its own context.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import os
import pwd
import shlex
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from slapos.errors import ExitCode, SlapOSError
from slapos.format.templates import Entry, NodeSettings, node_config, render_ini
from slapos.system import Runner, wait_until, write_file_atomic
from slapos.wording import counted

log = logging.getLogger(__name__)

COMPUTER_ID = "local_computer"
#: the unprivileged layout's partition network: every 127/8 address is local on Linux
UNPRIVILEGED_NETWORK = "127.10.0.0/16"
ROOT_NETWORK = "10.0.0.0/16"


class ConfigureLocalError(SlapOSError):
    """The local node could not be set up."""


@dataclass(frozen=True)
class LocalSettings:
    config_dir: Path
    instance_root: Path
    software_root: Path
    home: Path  # upstream's "buildout directory": logs, computer XML, proxy database
    interface_name: str = "lo"
    ipv4_local_network: str = UNPRIVILEGED_NETWORK
    partition_amount: int = 20
    listen_ip: str = "127.0.0.1"
    listen_port: int = 8080
    privileged: bool = False
    #: configure partition addresses, taps and routes (root, and not on lo)
    alter_network: bool = False
    shacache: bool = False
    #: the users node format creates (root only): partition N runs as user_base_name + N
    user_base_name: str = "slapuser"
    software_user: str = "slapsoft"
    #: the Python that runs `slapos` under supervisord (the proxy, the watchdog)
    python: str = sys.executable

    @property
    def master_url(self) -> str:
        host = f"[{self.listen_ip}]" if ":" in self.listen_ip else self.listen_ip
        return f"http://{host}:{self.listen_port}"

    @property
    def node_config(self) -> Path:
        return self.config_dir / "slapos.cfg"

    @property
    def definition_file(self) -> Path | None:
        """The slapformat definition file giving partition addresses, when format cannot."""
        if self.privileged and self.alter_network:
            return None
        return self.home / "slapformat-definition.cfg"

    @property
    def proxy_config(self) -> Path:
        return self.config_dir / "slapos-proxy.cfg"

    @property
    def client_config(self) -> Path:
        return self.config_dir / "slapos-client.cfg"


def node_settings(s: LocalSettings) -> NodeSettings:
    run = s.home / "var" / "run"
    extra_slapos: tuple[tuple[str, str], ...] = (
        ("pidfile_software", str(run / "slapos-node-software.pid")),
        ("pidfile_instance", str(run / "slapos-node-instance.pid")),
        ("pidfile_report", str(run / "slapos-node-report.pid")),
    )
    extra_format: tuple[tuple[str, str], ...] = ()
    if not s.privileged:
        extra_slapos += (("root_check", "false"),)
        extra_format += (("alter_user", "false"),)
    if s.definition_file is not None:
        extra_format += (
            ("alter_network", "false"),
            ("partition_has_ipv6_range", "false"),
            ("input_definition_file", str(s.definition_file)),
        )
    cache: tuple[tuple[str, str], ...] = ()
    if s.shacache:
        base = f"{s.master_url}/shacache"
        cache = tuple(
            (f"{kind}-{what}-url", f"{base}/{what}")
            for kind in ("download-binary", "download")
            for what in ("cache", "dir")
        )
    return NodeSettings(
        computer_id=COMPUTER_ID,
        master_url=s.master_url,
        software_root=str(s.software_root),
        instance_root=str(s.instance_root),
        interface_name=s.interface_name,
        ipv4_local_network=s.ipv4_local_network,
        partition_amount=s.partition_amount,
        computer_xml=str(s.home / "slapos.xml"),
        user_base_name=s.user_base_name,
        software_user=s.software_user,
        format_log_file=str(s.home / "log" / "slapos-node-format.log"),
        extra_slapos=extra_slapos,
        extra_slapformat=extra_format,
        networkcache=cache,
    )


def proxy_config_text(s: LocalSettings) -> str:
    entries: list[tuple[str, str] | str] = [
        "the local master: `slapos proxy start --cfg` this file",
        ("host", s.listen_ip),
        ("port", str(s.listen_port)),
        ("database_uri", str(s.home / "slapproxy.db")),
    ]
    if s.shacache:
        cache = s.instance_root / "shacache"
        entries += [
            "a local shacache/shadir, filled from the public one",
            ("shacache-content-directory", str(cache / "data")),
            ("shacache-metadata-directory", str(cache / "dir")),
            ("shacache-signing-key-path", str(cache / "signing-key.pem")),
            ("shacache-upstream-cache-url", "http://shacache.nxdcdn.com"),
            ("shacache-upstream-dir-url", "http://shadir.nxdcdn.com"),
        ]
    return render_ini(
        [
            (
                "slapos",
                [
                    ("computer_id", COMPUTER_ID),
                    ("master_url", s.master_url + "/"),
                    ("software_root", str(s.software_root)),
                    ("instance_root", str(s.instance_root)),
                ],
            ),
            ("slapproxy", entries),
        ],
        "written by `slapos configure local`",
    )


def client_config_text(s: LocalSettings) -> str:
    return render_ini(
        [("slapos", ["the local proxy: no certificate needed", ("master_url", s.master_url)])],
        "client configuration written by `slapos configure local`:\n"
        f"slapos request --cfg {s.client_config} ...",
    )


def _generate_signing_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_file_atomic(path, pem.decode(), 0o600)


def partition_addresses(s: LocalSettings) -> list[ipaddress.IPv4Address]:
    """The IPv4 address of each partition in the definition file: the network's first."""
    network = ipaddress.IPv4Network(s.ipv4_local_network)
    addresses = list(itertools.islice(network.hosts(), s.partition_amount))
    if len(addresses) < s.partition_amount:
        raise ConfigureLocalError(
            f"--ipv4-local-network {network} has fewer addresses than the "
            f"{counted(s.partition_amount, 'partition')}"
        )
    return addresses


def definition_text(s: LocalSettings) -> str:
    """The slapformat definition file of the layouts without network changes."""
    from slapos.config import IniFile
    from slapos.format.addressing import netmask6
    from slapos.format.config import load_format_config

    config = load_format_config(IniFile.read(s.node_config))
    network = ipaddress.IPv4Network(s.ipv4_local_network)
    if not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        log.warning(
            "%s is not inside 127.0.0.0/8: partition addresses are not configured on any "
            "interface, services cannot listen on them",
            network,
        )
    # without root, partitions belong to the caller (upstream's format looks the user up)
    user = None if s.privileged else pwd.getpwuid(os.geteuid()).pw_name
    v6 = f"::1/{netmask6(128)}"
    sections: list[tuple[str, Sequence[Entry]]] = [
        ("computer", [("address", "127.0.0.1/255.255.255.255")])
    ]
    for index, v4 in enumerate(partition_addresses(s)):
        sections.append(
            (
                f"partition_{index}",
                [
                    ("address", f"{v4}/255.255.255.255 {v6}"),
                    ("pathname", config.partition_reference(index)),
                    ("user", user or config.partition_user(index)),
                    ("network_interface", f"{config.tap_base_name}{index}"),
                ],
            )
        )
    return render_ini(
        sections,
        "partitions of this node for `slapos node format` (input_definition_file), written "
        "by\n`slapos configure local`: format does not configure addresses here",
    )


def write_files(s: LocalSettings) -> None:
    """slapos.cfg, slapos-proxy.cfg, slapos-client.cfg; the directories they name."""
    if s.definition_file is not None:
        partition_addresses(s)  # refused before anything is written
    for directory in (s.config_dir, s.instance_root, s.software_root, s.home):
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
    for private in (s.home / "log", s.home / "var", s.home / "var" / "run"):
        private.mkdir(parents=True, exist_ok=True)
        os.chmod(private, 0o700 if private.name == "log" else 0o755)
    header = (
        f"SlapOS node {COMPUTER_ID}, driven by the local proxy at {s.master_url}\n"
        f"written by `slapos configure local` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    write_file_atomic(s.node_config, node_config(node_settings(s), header), 0o644)
    write_file_atomic(s.proxy_config, proxy_config_text(s), 0o644)
    write_file_atomic(s.client_config, client_config_text(s), 0o644)
    if s.definition_file is not None:
        write_file_atomic(s.definition_file, definition_text(s), 0o644)
    if s.shacache:
        key = s.instance_root / "shacache" / "signing-key.pem"
        if not key.exists():
            _generate_signing_key(key)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _our_proxy_runs(instance_root: Path) -> bool:
    """Whether this node's supervisord runs its program `slapproxy` (started or starting)."""
    from slapos.grid import supervisor

    if supervisor.running_state(instance_root) != "RUNNING":
        return False
    try:
        states = supervisor.process_states(instance_root, ["slapproxy"])
    except supervisor.SupervisorError:
        return False
    return states.get("slapproxy") in ("RUNNING", "STARTING")


def check_port(s: LocalSettings) -> None:
    """The proxy's address must be free and this machine's, or held by this node's proxy.

    Else the node, the client and the format run would all talk to whatever answers there
    (another demo's or node's master, say) while this node's proxy fails to listen; or
    wait a minute for a proxy that cannot listen.
    """
    import errno

    if _our_proxy_runs(s.instance_root):
        return
    family = socket.AF_INET6 if ":" in s.listen_ip else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy binds
        try:
            probe.bind((s.listen_ip, s.listen_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigureLocalError(
                    f"{s.listen_ip}:{s.listen_port} is already used by another program "
                    "(another local master or demo?): stop it, or choose another "
                    "--daemon-listen-port"
                ) from None
            raise ConfigureLocalError(
                f"the proxy cannot listen on {s.listen_ip}:{s.listen_port}: "
                f"{exc.strerror or exc} (--daemon-listen-ip must be an address of this "
                "machine; ports below 1024 need root)"
            ) from None


def start_proxy(s: LocalSettings, runner: Runner, timeout: float = 60.0) -> None:
    """The proxy as program `slapproxy` of the node's supervisord; wait until it listens."""
    from slapos.config import MasterAccess
    from slapos.grid import supervisor

    command = " ".join(
        shlex.quote(a)
        for a in (s.python, "-m", "slapos", "proxy", "start", "--cfg", str(s.proxy_config))
    )
    program = supervisor.Program(
        name="slapproxy",
        command=command,
        process_name="slapproxy",
        directory=s.home,
        autostart=True,
        autorestart=True,
        log_file=s.home / "log" / "slapos-proxy.log",
        user=0 if s.privileged else None,
        startsecs=1,  # a proxy exiting at once is retried 3 times, then FATAL (not forever)
        startretries=3,
    )
    supervisor.add_program(s.instance_root, program)
    watchdog = supervisor.watchdog_command(
        MasterAccess(s.master_url), COMPUTER_ID, s.instance_root, python=s.python
    )
    supervisor.write_supervisord_config(s.instance_root, watchdog)
    if supervisor.running_state(s.instance_root) == "RUNNING":
        supervisor.apply(s.instance_root)  # loads the slapproxy program if it is new
    else:
        supervisor.ensure_supervisord(s.instance_root, runner)
    log_file = s.home / "log" / "slapos-proxy.log"
    if not _wait_proxy(s, timeout):
        if _proxy_state(s) == "FATAL":  # supervisord gave up: no use waiting longer
            raise ConfigureLocalError(
                f"the proxy for {s.master_url} exited at each of its starts (see {log_file})"
            )
        raise ConfigureLocalError(
            f"the proxy does not answer on {s.master_url} after {timeout:.0f}s (see {log_file})"
        )


def _proxy_state(s: LocalSettings) -> str | None:
    from slapos.grid import supervisor

    try:
        return supervisor.process_states(s.instance_root, ["slapproxy"]).get("slapproxy")
    except SlapOSError:
        return None


def _wait_proxy(s: LocalSettings, timeout: float) -> bool:
    """Wait until the proxy listens (True), or supervisord gave up on it, or `timeout`."""
    answered = False

    def done() -> bool:
        nonlocal answered
        answered = _port_open(s.listen_ip, s.listen_port)
        return answered or _proxy_state(s) == "FATAL"

    wait_until(done, timeout, pause=0.1)
    return answered


def configure_local(
    s: LocalSettings, runner: Runner, run_format: Callable[[], int], *, reuse: bool = False
) -> None:
    """Set everything up; with `reuse`, an existing set-up is started again, not refused."""
    if s.node_config.exists() and not reuse:
        raise ConfigureLocalError(
            f"a SlapOS configuration already exists at {s.node_config}: aborting (remove it, "
            "or choose another --slapos-configuration-directory)"
        )
    check_port(s)
    written = (s.node_config, s.proxy_config, s.client_config, s.definition_file)
    #: the files this run writes anew (a failure removes them again)
    wrote = (
        [p for p in written if p is not None and not p.exists()]
        if not s.node_config.exists()
        else []
    )
    if wrote:
        try:
            write_files(s)
        except OSError as exc:
            where = exc.filename or s.config_dir
            raise ConfigureLocalError(
                f"cannot write {where}: {exc.strerror} (run as root, or choose directories "
                "you own with --slapos-configuration-directory, --slapos-instance-root, "
                "--slapos-software-root and --slapos-buildout-directory)"
            ) from None
        log.info("node configuration written to %s", s.node_config)
    from slapos.grid import supervisor

    was_running = supervisor.running_state(s.instance_root) == "RUNNING"
    try:
        start_proxy(s, runner)
        log.info("proxy listening on %s", s.master_url)
        result = run_format()
        if result != ExitCode.OK:
            raise ConfigureLocalError(
                f"slapos node format --cfg {s.node_config} failed (exit {result})"
            )
    except SlapOSError as exc:
        undone = _undo(s, stop=not was_running, remove=wrote)
        if not undone:
            raise
        raise ConfigureLocalError(f"{exc}; {'; '.join(undone)}") from exc
    except BaseException:  # Ctrl-C, a bug: nothing this run started is left behind either
        _undo(s, stop=not was_running, remove=wrote)
        raise
    log.info("node formatted: %s posted to the proxy", counted(s.partition_amount, "partition"))


def _undo(s: LocalSettings, *, stop: bool, remove: list[Path]) -> list[str]:
    """After a failure: stop the supervisord this run started and remove the configuration
    files it wrote (a rerun then starts afresh instead of finding "a configuration already
    exists"); what was undone, as it is told. Logs and databases are kept."""
    undone = []
    if stop and _stop_supervisord(s):
        undone.append("stopped the supervisord (and proxy) this run had started")
    if remove:
        for path in remove:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        undone.append("removed the configuration files it had written")
    return undone


def _stop_supervisord(s: LocalSettings) -> bool:
    """Stop the node's supervisord (started by this run); whether it ran and stopped."""
    from slapos.grid import supervisor

    try:
        if supervisor.running_state(s.instance_root) is None:
            return False
        supervisor.shutdown(s.instance_root)
    except SlapOSError as exc:
        log.warning("could not stop the supervisord this run started: %s", exc)
        return False
    return True
