"""The node's supervisord: its configuration, its launch, and every talk with it.

This is the only module that imports `supervisor` or speaks supervisord's XML-RPC.

Layout under `instance_root` (as upstream's node.md §7.1)::

    etc/supervisord.conf           the daemon's configuration (mode 0600)
    etc/supervisord.conf.d/*.conf  one file per program group: <partition id>.conf,
                                   <partition id>-<manager>.conf, and extra programs
                                   (`add_program`, e.g. the proxy of `configure local`)
    var/log/supervisord.log, var/run/supervisord.pid
    sv.sock                        the control socket (supervisord.socket if that legacy
                                   one exists)

Public API used by other parts of slapos (keep stable):

* `write_supervisord_config(instance_root, watchdog_command=None) -> SupervisordPaths`
* `ensure_supervisord(instance_root, runner, nodaemon=False) -> None`
* `add_program(instance_root, name, command, ...) -> Path` and `remove_program(...)`
* `apply(instance_root) -> None`  (reload the configuration files into the running daemon)
* `connect(instance_root)` -> `Supervisor` (context manager, XML-RPC)

Must not import slapos.cli.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pwd
import shlex
import socket
import stat
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slapos.errors import SlapOSError
from slapos.system import Runner

if TYPE_CHECKING:
    import xmlrpc.client

log = logging.getLogger(__name__)

#: Our socket name; upstream's older one is used instead when it exists.
SOCKET_NAME = "sv.sock"
LEGACY_SOCKET_NAME = "supervisord.socket"
#: supervisord's XML-RPC fault codes we act on.
FAULT_BAD_NAME = 10
FAULT_SHUTDOWN_STATE = 6
FAULT_ALREADY_STARTED = 60
FAULT_NOT_RUNNING = 70
RUNNING_STATES = ("RUNNING", "STARTING", "BACKOFF")
#: AF_UNIX socket paths are limited to 108 bytes (with the final NUL).
MAX_SOCKET_PATH = 107


class SupervisorError(SlapOSError):
    """supervisord could not be started, reached or told what to do."""


@dataclass(frozen=True)
class SupervisordPaths:
    """Where the node's supervisord keeps its files."""

    instance_root: Path
    config: Path
    include_dir: Path
    socket: Path
    logfile: Path
    pidfile: Path
    #: set by write_supervisord_config: the configuration file was (re)written.
    changed: bool = False

    @classmethod
    def of(cls, instance_root: Path) -> SupervisordPaths:
        root = Path(os.path.abspath(instance_root))
        sock = root / SOCKET_NAME
        if (root / LEGACY_SOCKET_NAME).exists():
            sock = root / LEGACY_SOCKET_NAME
        return cls(
            instance_root=root,
            config=root / "etc" / "supervisord.conf",
            include_dir=root / "etc" / "supervisord.conf.d",
            socket=sock,
            logfile=root / "var" / "log" / "supervisord.log",
            pidfile=root / "var" / "run" / "supervisord.pid",
        )


# ---------------------------------------------------------------------------------------
# Pure text generation


def supervisord_config_text(paths: SupervisordPaths, watchdog_command: str | None = None) -> str:
    """The text of etc/supervisord.conf."""
    lines = [
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[include]",
        f"files = {paths.include_dir}/*.conf",
        "",
        "[supervisorctl]",
        f"serverurl = unix://{paths.socket}",
        "",
        "[supervisord]",
        "loglevel = info",
        f"logfile = {paths.logfile}",
        "logfile_maxbytes = 50MB",
        "logfile_backups = 10",
        "nodaemon = false",
        f"pidfile = {paths.pidfile}",
        # minfds is not set on purpose: select() does not support descriptors > 1023.
        "",
        "[unix_http_server]",
        f"file = {paths.socket}",
        "chmod = 0700",
        "",
    ]
    if watchdog_command:
        # Upstream writes this section with an empty command for `node supervisord`, which
        # makes supervisord log a FATAL watchdog; we leave it out until there is a command.
        lines += [
            "[eventlistener:watchdog]",
            f"command = {watchdog_command}",
            "events = PROCESS_STATE_EXITED, PROCESS_STATE_FATAL",
            "",
        ]
    return "\n".join(lines)


def watchdog_command(
    master_url: str,
    computer_id: str,
    instance_root: Path,
    certificate_repository_path: Path | None = None,
    python: str | None = None,
    *,
    master_ca_file: str | None = None,
    master_tls_verify: bool = True,
) -> str:
    """The event listener command that bangs the master when an -on-watch service dies."""
    argv = [
        python or sys.executable,
        "-m",
        "slapos.grid.watchdog",
        "--master-url",
        master_url,
        "--computer-id",
        computer_id,
        "--instance-root",
        str(instance_root),
    ]
    if certificate_repository_path is not None:
        argv += ["--certificate-repository-path", str(certificate_repository_path)]
    if master_ca_file:
        argv += ["--master-ca-file", master_ca_file]
    if not master_tls_verify:
        argv.append("--no-master-tls-verify")
    return " ".join(shlex.quote(a) for a in argv)


@dataclass(frozen=True)
class Program:
    """One supervisord program."""

    name: str  # the program section name: [program:<name>]
    command: str
    process_name: str | None = None
    directory: Path | None = None
    user: int | str | None = None
    group: int | str | None = None
    autostart: bool = False
    autorestart: bool = False
    log_file: Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    priority: int | None = None
    startsecs: int = 0
    startretries: int = 0
    stopwaitsecs: int = 60

    def text(self) -> str:
        def b(value: bool) -> str:
            return "true" if value else "false"

        lines = [f"[program:{self.name}]"]
        if self.directory is not None:
            lines.append(f"directory={self.directory}")
        lines.append(f"command={self.command}")
        if self.process_name:
            lines.append(f"process_name={self.process_name}")
        lines += [
            f"autostart={b(self.autostart)}",
            f"autorestart={b(self.autorestart)}",
            f"startsecs={self.startsecs}",
            f"startretries={self.startretries}",
            "exitcodes=0",
            "stopsignal=TERM",
            f"stopwaitsecs={self.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
        ]
        if self.priority is not None:
            lines.append(f"priority={self.priority}")
        if self.user is not None:
            lines.append(f"user={self.user}")
        if self.group is not None:
            lines.append(f"group={self.group}")
        lines += ["serverurl=AUTO", "redirect_stderr=true"]
        if self.log_file is not None:
            for stream in ("stdout", "stderr"):
                lines += [
                    f"{stream}_logfile={self.log_file}",
                    f"{stream}_logfile_maxbytes=100KB",
                    f"{stream}_logfile_backups=1",
                ]
        if self.environment:
            env = ",".join(f'{k}="{v}"' for k, v in self.environment.items())
            lines.append(f"environment={env}")
        return "\n".join(lines) + "\n"


def group_text(group: str, programs: Sequence[Program]) -> str:
    """A `[group:<group>]` section and its programs."""
    head = f"[group:{group}]\nprograms={','.join(p.name for p in programs)}\n"
    return head + "".join(p.text() for p in programs)


@dataclass(frozen=True)
class PartitionOwner:
    uid: int
    gid: int
    name: str
    home: str

    @classmethod
    def of(cls, partition: Path) -> PartitionOwner:
        st = partition.stat()
        try:
            pw = pwd.getpwuid(st.st_uid)
            name, home = pw.pw_name, pw.pw_dir
        except KeyError:  # an owner with no passwd entry: name it by number
            name, home = str(st.st_uid), str(partition)
        return cls(st.st_uid, st.st_gid, name, home)


def partition_programs(partition_id: str, partition: Path, owner: PartitionOwner) -> list[Program]:
    """The programs of a partition: etc/run/* as is, etc/service/* as '<name>-on-watch'."""
    programs = []
    for folder, suffix in (("run", ""), ("service", "-on-watch")):
        directory = partition / "etc" / folder
        if not directory.is_dir():
            continue
        for entry in sorted(os.listdir(directory)):
            path = directory / entry
            programs.append(
                Program(
                    name=f"{partition_id}_{entry}",
                    command=str(path),
                    process_name=entry + suffix,
                    directory=partition,
                    user=owner.uid,
                    group=owner.gid,
                    log_file=partition / f".{partition_id}_{entry}.log",
                    environment={"USER": owner.name, "LOGNAME": owner.name, "HOME": owner.home},
                )
            )
    return programs


# ---------------------------------------------------------------------------------------
# Files


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _update_file(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write `text` unless the file holds it already; True if written."""
    try:
        if path.read_text() == text:
            if stat.S_IMODE(path.stat().st_mode) != mode:
                path.chmod(mode)
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def write_supervisord_config(
    instance_root: Path, watchdog_command: str | None = None
) -> SupervisordPaths:
    """Create the layout and write etc/supervisord.conf (only when it changed)."""
    instance_root = Path(instance_root)
    if not instance_root.is_dir():
        raise SupervisorError(f"instance root {instance_root} does not exist")
    paths = SupervisordPaths.of(instance_root)
    if len(str(paths.socket)) > MAX_SOCKET_PATH:
        raise SupervisorError(
            f"supervisord socket path {paths.socket} is longer than {MAX_SOCKET_PATH} bytes "
            "(use a shorter instance_root)"
        )
    var = paths.instance_root / "var"
    var.mkdir(exist_ok=True)
    var.chmod(0o755)
    for d in (var / "log", var / "run", paths.instance_root / "etc", paths.include_dir):
        _private_dir(d)
    changed = _update_file(paths.config, supervisord_config_text(paths, watchdog_command))
    return dataclasses.replace(paths, changed=changed)


def partition_config_files(instance_root: Path, partition_id: str) -> list[Path]:
    """<id>.conf and <id>-*.conf (manager groups); never another partition's ('part1a')."""
    include = SupervisordPaths.of(instance_root).include_dir
    try:
        names = os.listdir(include)
    except FileNotFoundError:
        return []
    return [
        include / n
        for n in sorted(names)
        if n == f"{partition_id}.conf" or (n.startswith(f"{partition_id}-") and n.endswith(".conf"))
    ]


def write_partition_group(instance_root: Path, partition_id: str, partition: Path) -> bool:
    """Write <id>.conf for a partition's etc/run and etc/service, remove its other files.

    Returns True if anything changed on disk. No file is written when the partition has
    neither runners nor services (a warning is logged).
    """
    programs = partition_programs(partition_id, partition, PartitionOwner.of(partition))
    include = SupervisordPaths.of(instance_root).include_dir
    main = include / f"{partition_id}.conf"
    changed = False
    for path in partition_config_files(instance_root, partition_id):
        if path != main or not programs:
            path.unlink()
            changed = True
    if not programs:
        log.warning("%s: no runners nor services found", partition_id)
        return changed
    return _update_file(main, group_text(partition_id, programs)) or changed


def remove_partition_group(instance_root: Path, partition_id: str, *, all_files: bool) -> bool:
    """Delete <id>.conf (and with `all_files` the manager groups too); True if any was."""
    changed = False
    for path in partition_config_files(instance_root, partition_id):
        if all_files or path.name == f"{partition_id}.conf":
            path.unlink()
            changed = True
    return changed


def add_program(instance_root: Path, program: Program, *, file_name: str | None = None) -> Path:
    """Write an extra program under etc/supervisord.conf.d/ (e.g. the local proxy).

    The file is named `<file_name or program.name>.conf`. Call `apply()` (or
    `ensure_supervisord()` when the daemon is not running yet) to load it.
    """
    paths = SupervisordPaths.of(instance_root)
    _private_dir(paths.include_dir)
    path = paths.include_dir / f"{file_name or program.name}.conf"
    _update_file(path, program.text())
    return path


def remove_program(instance_root: Path, name: str) -> bool:
    path = SupervisordPaths.of(instance_root).include_dir / f"{name}.conf"
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# XML-RPC


def _server_proxy(socket_path: Path, timeout: float) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy speaking HTTP over supervisord's AF_UNIX socket, with a timeout."""
    import http.client
    import xmlrpc.client

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            self.sock = sock

    class UnixTransport(xmlrpc.client.Transport):
        def make_connection(self, host: Any) -> Any:
            return Connection("localhost", timeout=timeout)

    return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=UnixTransport())


class Supervisor:
    """A connection to the node's supervisord (the `supervisor.*` XML-RPC namespace)."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self._proxy = _server_proxy(socket_path, timeout)
        self.rpc: Any = self._proxy.supervisor

    def close(self) -> None:
        self._proxy("close")()

    def state(self) -> str:
        return str(self.rpc.getState()["statename"])

    def process_info(self, name: str) -> dict[str, Any] | None:
        import xmlrpc.client

        try:
            return dict(self.rpc.getProcessInfo(name))
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == FAULT_BAD_NAME:
                return None
            raise

    def all_processes(self) -> list[dict[str, Any]]:
        return [dict(p) for p in self.rpc.getAllProcessInfo()]

    def reload(self) -> tuple[list[str], list[str], list[str]]:
        """Re-read the configuration files and apply them: groups added, changed, removed."""
        [[added, changed, removed]] = self.rpc.reloadConfig()
        for group in removed:
            self._remove_group(group)
        for group in changed:
            self._remove_group(group)
            self.rpc.addProcessGroup(group)
        for group in added:
            self.rpc.addProcessGroup(group)
        if added or changed or removed:
            log.debug("supervisord: added %s, changed %s, removed %s", added, changed, removed)
        return list(added), list(changed), list(removed)

    def _remove_group(self, group: str) -> None:
        import xmlrpc.client

        with contextlib.suppress(xmlrpc.client.Fault):
            self.rpc.stopProcessGroup(group)
        for _ in range(10):
            try:
                self.rpc.removeProcessGroup(group)
                return
            except xmlrpc.client.Fault as exc:
                if exc.faultCode == FAULT_BAD_NAME:
                    return
                log.debug("removing group %s: %s, retrying", group, exc.faultString)
                time.sleep(1)
        raise SupervisorError(f"supervisord would not remove program group {group}")

    def start_group(self, group: str, wait: bool = False) -> bool:
        """Start the programs of a group that are not running; False if no such group."""
        import xmlrpc.client

        try:
            self.rpc.startProcessGroup(group, wait)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == FAULT_BAD_NAME:
                return False
            raise
        return True

    def stop_group(self, group: str) -> None:
        import xmlrpc.client

        with contextlib.suppress(xmlrpc.client.Fault):
            self.rpc.stopProcessGroup(group)

    def start_all(self, wait: bool = False) -> None:
        self.rpc.startAllProcesses(wait)


@contextlib.contextmanager
def connect(instance_root: Path, timeout: float = 30.0) -> Iterator[Supervisor]:
    """A connection to the running supervisord; SupervisorError if it cannot be reached."""
    import xmlrpc.client

    paths = SupervisordPaths.of(instance_root)
    client = Supervisor(paths.socket, timeout)
    try:
        yield client
    except (OSError, xmlrpc.client.ProtocolError) as exc:
        raise SupervisorError(f"cannot talk to supervisord on {paths.socket}: {exc}") from exc
    except xmlrpc.client.Fault as exc:
        raise SupervisorError(f"supervisord refused: {exc.faultString}") from exc
    finally:
        with contextlib.suppress(Exception):  # closing a broken connection: nothing to do
            client.close()


def running_state(instance_root: Path, timeout: float = 2.0) -> str | None:
    """supervisord's state name, or None when nothing answers on the socket."""
    import xmlrpc.client

    paths = SupervisordPaths.of(instance_root)
    if not paths.socket.exists():
        return None
    try:
        return Supervisor(paths.socket, timeout).state()
    except (OSError, xmlrpc.client.ProtocolError):
        return None
    except xmlrpc.client.Fault as exc:
        if exc.faultCode == FAULT_SHUTDOWN_STATE:
            return "SHUTDOWN"
        raise SupervisorError(f"supervisord refused: {exc.faultString}") from exc


def supervisord_alive(instance_root: Path) -> bool:
    """Cheap check, no XML-RPC: the pid file names a live supervisord and the socket exists."""
    paths = SupervisordPaths.of(instance_root)
    try:
        pid = int(paths.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"supervisord" in cmdline and paths.socket.exists()


def supervisord_argv(paths: SupervisordPaths, nodaemon: bool = False) -> list[str]:
    """The command that starts supervisord with our Python (no shebang length limit)."""
    code = (
        f"import sys; sys.path[:0] = {sys.path!r}; import supervisor.supervisord; "
        "supervisor.supervisord.main()"
    )
    argv = [sys.executable, "-c", code, "-c", str(paths.config)]
    if nodaemon:
        argv.append("--nodaemon")
    return argv


def ensure_supervisord(
    instance_root: Path,
    runner: Runner,
    *,
    nodaemon: bool = False,
    sleep: Any = time.sleep,
) -> None:
    """Start supervisord from etc/supervisord.conf unless it is already running.

    When it runs already, make sure the watchdog listener of the configuration is running.
    `write_supervisord_config()` must have been called first.
    """
    paths = SupervisordPaths.of(instance_root)
    if not paths.config.exists():
        raise SupervisorError(f"{paths.config} is missing (write the configuration first)")
    for attempt in range(1, 6):
        state = running_state(instance_root)
        if state == "RUNNING":
            log.debug("supervisord already running on %s", paths.socket)
            _ensure_watchdog(instance_root, paths)
            return
        if state == "SHUTDOWN":
            log.info("supervisord is shutting down, checking again")
            sleep(2 * attempt)
            continue
        if state is not None:
            log.warning("supervisord in unknown state %s, starting it", state)
        break
    log.info("launching supervisord (%s)", paths.config)
    if nodaemon:
        # In the foreground: runs until supervisord exits, output to our terminal.
        result = runner.run(supervisord_argv(paths, nodaemon=True), env={}, capture=False)
        if not result.ok:
            raise SupervisorError(f"supervisord exited with status {result.returncode}")
        return
    result = runner.run(supervisord_argv(paths), env={}, timeout=60)
    if not result.ok:
        reason = result.tail(5) or f"status {result.returncode}"
        raise SupervisorError(f"failed to launch supervisord: {reason}")
    deadline = time.monotonic() + 30
    delay = 0.02
    while time.monotonic() < deadline:
        if running_state(instance_root) == "RUNNING":
            return
        sleep(delay)
        delay = min(delay * 2, 0.5)
    raise SupervisorError(f"supervisord did not come up on {paths.socket} (see {paths.logfile})")


def _ensure_watchdog(instance_root: Path, paths: SupervisordPaths) -> None:
    """A supervisord started without a watchdog (node supervisord) gets it on the next run."""
    import xmlrpc.client

    with connect(instance_root) as sv:
        info = sv.process_info("watchdog")
        if info is not None and info["statename"] in RUNNING_STATES:
            return
        # Re-reading the configuration adds (or refreshes) the watchdog group.
        sv.reload()
        info = sv.process_info("watchdog")
        if info is not None and info["statename"] not in RUNNING_STATES:
            with contextlib.suppress(xmlrpc.client.Fault):
                sv.start_group("watchdog")


def apply(instance_root: Path) -> None:
    """Load the configuration files into the running supervisord."""
    with connect(instance_root) as sv:
        sv.reload()


def start_partition(instance_root: Path, partition_id: str, partition: Path) -> None:
    """Regenerate a partition's group, apply it, start its programs (no wait)."""
    write_partition_group(instance_root, partition_id, partition)
    with connect(instance_root) as sv:
        sv.reload()
        if not sv.start_group(partition_id):
            log.debug("%s: nothing to start", partition_id)


def stop_partition(instance_root: Path, partition_id: str, *, all_files: bool = False) -> None:
    """Remove a partition's group file(s); supervisord stops and forgets its programs."""
    if remove_partition_group(instance_root, partition_id, all_files=all_files):
        apply(instance_root)


def process_states(instance_root: Path, names: Sequence[str]) -> dict[str, str]:
    """`group:process` -> state name, for the names supervisord knows."""
    result = {}
    with connect(instance_root) as sv:
        for name in names:
            info = sv.process_info(name)
            if info is not None:
                result[name] = str(info["statename"])
    return result


def supervisorctl_argv(instance_root: Path, args: Sequence[str]) -> list[str]:
    """supervisorctl on the node's configuration, run with our Python."""
    paths = SupervisordPaths.of(instance_root)
    code = (
        f"import sys; sys.path[:0] = {sys.path!r}; import supervisor.supervisorctl; "
        "supervisor.supervisorctl.main()"
    )
    return [sys.executable, "-c", code, "-c", str(paths.config), *args]


def shutdown(instance_root: Path, timeout: float = 30.0) -> None:
    """Stop every program and supervisord itself; wait until its socket is gone."""
    import xmlrpc.client

    paths = SupervisordPaths.of(instance_root)
    if running_state(instance_root) is None:
        return
    pid = None
    with contextlib.suppress(OSError, ValueError):
        pid = int(paths.pidfile.read_text().strip())
    with contextlib.suppress(OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError):
        Supervisor(paths.socket, timeout).rpc.shutdown()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is None or not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    raise SupervisorError(f"supervisord (pid {pid}) did not stop within {timeout}s")
