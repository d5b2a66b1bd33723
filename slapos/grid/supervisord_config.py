"""The node's supervisord configuration files: their text, and writing them.

Layout under `instance_root` (as upstream's, node.md §7.1)::

    etc/supervisord.conf           the daemon's configuration (mode 0600)
    etc/supervisord.conf.d/*.conf  one file per program group: <partition id>.conf,
                                   <partition id>-<manager>.conf, and extra programs
                                   (`add_program`, e.g. the proxy of `configure local`)
    var/log/supervisord.log, var/run/supervisord.pid
    sv.sock                        the control socket (supervisord.socket if that legacy
                                   one exists)

The text is built by pure functions (`supervisord_config_text`, `Program.text`,
`group_text`); files are written atomically, and only when their text changes, so that
a reload restarts nothing that did not change. Talking to the running daemon is
`slapos.grid.supervisor`, which re-exports these names.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import shlex
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slapos.errors import SlapOSError

if TYPE_CHECKING:
    from slapos.config import MasterAccess

log = logging.getLogger(__name__)

#: Our socket name; upstream's older one is used instead when it exists.
SOCKET_NAME = "sv.sock"
LEGACY_SOCKET_NAME = "supervisord.socket"
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
    master: MasterAccess,
    computer_id: str,
    instance_root: Path,
    certificate_repository_path: Path | None = None,
    python: str | None = None,
) -> str:
    """The event listener command that bangs the master when an -on-watch service dies
    (with each partition's own certificate, from `certificate_repository_path`)."""
    argv = [
        python or sys.executable,
        "-m",
        "slapos.grid.watchdog",
        "--master-url",
        master.url,
        "--computer-id",
        computer_id,
        "--instance-root",
        str(instance_root),
    ]
    if certificate_repository_path is not None:
        argv += ["--certificate-repository-path", str(certificate_repository_path)]
    if master.ca_file:
        argv += ["--master-ca-file", master.ca_file]
    if not master.tls_verify:
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
    try:
        var.mkdir(exist_ok=True)
        var.chmod(0o755)
        for d in (var / "log", var / "run", paths.instance_root / "etc", paths.include_dir):
            _private_dir(d)
        changed = _update_file(paths.config, supervisord_config_text(paths, watchdog_command))
    except OSError as exc:  # a read-only instance root, or one of another user
        raise SupervisorError(
            f"cannot write supervisord's files in instance root {instance_root}: "
            f"{exc.strerror or exc}: {exc.filename or paths.config} (run as the owner of "
            "instance_root, or fix [slapos] instance_root)"
        ) from exc
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
