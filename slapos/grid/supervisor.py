"""The node's supervisord: its launch, and every talk with it (XML-RPC over its socket).

This is the only module that imports `supervisor` or speaks supervisord's XML-RPC. Its
configuration files are written by `slapos.grid.supervisord_config`, whose names are
re-exported here: other parts of slapos use this module alone.

Public API used by other parts of slapos (keep stable):

* `write_supervisord_config(instance_root, watchdog_command=None) -> SupervisordPaths`
* `ensure_supervisord(instance_root, runner, nodaemon=False) -> None`
* `add_program(instance_root, program) -> Path` and `remove_program(...)`
* `apply(instance_root) -> None`  (reload the configuration files into the running daemon)
* `connect(instance_root)` -> `Supervisor` (context manager, XML-RPC)
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slapos.grid.supervisord_config import (
    LEGACY_SOCKET_NAME,
    MAX_SOCKET_PATH,
    SOCKET_NAME,
    PartitionOwner,
    Program,
    SupervisordPaths,
    SupervisorError,
    add_program,
    group_text,
    partition_config_files,
    partition_programs,
    remove_partition_group,
    remove_program,
    supervisord_config_text,
    watchdog_command,
    write_partition_group,
    write_supervisord_config,
)
from slapos.system import Clock, Runner, SystemClock, retry, wait_until

if TYPE_CHECKING:
    import xmlrpc.client

#: Our own names, and the configuration side's (re-exported: callers use this module alone).
__all__ = [
    "FAULT_ALREADY_STARTED",
    "FAULT_BAD_NAME",
    "FAULT_NOT_RUNNING",
    "FAULT_SHUTDOWN_STATE",
    "LEGACY_SOCKET_NAME",
    "MAX_SOCKET_PATH",
    "RUNNING_STATES",
    "SOCKET_NAME",
    "PartitionOwner",
    "Program",
    "Supervisor",
    "SupervisorError",
    "SupervisordPaths",
    "add_program",
    "apply",
    "connect",
    "ensure_supervisord",
    "group_text",
    "partition_config_files",
    "partition_programs",
    "process_states",
    "remove_partition_group",
    "remove_program",
    "running_state",
    "shutdown",
    "start_partition",
    "stop_partition",
    "supervisorctl_argv",
    "supervisord_alive",
    "supervisord_argv",
    "supervisord_config_text",
    "watchdog_command",
    "write_partition_group",
    "write_supervisord_config",
]

log = logging.getLogger(__name__)

#: supervisord's XML-RPC fault codes we act on.
FAULT_BAD_NAME = 10
FAULT_SHUTDOWN_STATE = 6
FAULT_ALREADY_STARTED = 60
FAULT_NOT_RUNNING = 70
RUNNING_STATES = ("RUNNING", "STARTING", "BACKOFF")


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

    def __init__(
        self, socket_path: Path, timeout: float = 30.0, clock: Clock | None = None
    ) -> None:
        self.socket_path = socket_path
        self.clock = clock or SystemClock()
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
        """Stop and remove a group; supervisord refuses the removal while it is stopping."""
        import xmlrpc.client

        with contextlib.suppress(xmlrpc.client.Fault):
            self.rpc.stopProcessGroup(group)

        def still_there(exc: Exception) -> bool:
            return isinstance(exc, xmlrpc.client.Fault) and exc.faultCode != FAULT_BAD_NAME

        def retrying(exc: Exception, delay: float) -> None:
            log.debug("removing group %s: %s, retrying in %.0fs", group, exc, delay)

        try:
            retry(
                lambda: self.rpc.removeProcessGroup(group),
                [1.0] * 9,
                still_there,
                clock=self.clock,
                on_retry=retrying,
            )
        except xmlrpc.client.Fault as exc:
            if exc.faultCode != FAULT_BAD_NAME:  # no such group (any more): removed
                raise SupervisorError(
                    f"supervisord would not remove program group {group}"
                ) from exc

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
    """Cheap check, no XML-RPC: the pid file names a live supervisord and the socket exists.

    PermissionError when this user may not read the pid file (it is private to root): that
    says nothing about whether supervisord runs.
    """
    paths = SupervisordPaths.of(instance_root)
    try:
        pid = int(paths.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except PermissionError:
        raise
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
    clock: Clock | None = None,
) -> None:
    """Start supervisord from etc/supervisord.conf unless it is already running.

    When it runs already, make sure the watchdog listener of the configuration is running.
    `write_supervisord_config()` must have been called first.
    """
    paths = SupervisordPaths.of(instance_root)
    if not paths.config.exists():
        raise SupervisorError(f"{paths.config} is missing (write the configuration first)")
    state = _settled_state(instance_root, clock)
    if state == "RUNNING":
        log.debug("supervisord already running on %s", paths.socket)
        _ensure_watchdog(instance_root, paths)
        return
    if state not in (None, "SHUTDOWN"):
        log.warning("supervisord in unknown state %s, starting it", state)
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
    if wait_until(
        lambda: running_state(instance_root) == "RUNNING",
        30,
        clock=clock,
        pause=0.02,
        backoff=2,
        max_pause=0.5,
    ):
        return
    raise SupervisorError(f"supervisord did not come up on {paths.socket} (see {paths.logfile})")


def _settled_state(instance_root: Path, clock: Clock | None) -> str | None:
    """running_state(), once supervisord is not shutting down (waited for 30 s at most:
    then it is started again anyway)."""
    state = running_state(instance_root)

    def settled() -> bool:
        nonlocal state
        state = running_state(instance_root)
        return state != "SHUTDOWN"

    if state == "SHUTDOWN":
        log.info("supervisord is shutting down, waiting until it has stopped")
        wait_until(settled, 30, clock=clock, pause=2, backoff=1.5)
    return state


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
    if wait_until(lambda: pid is None or not Path(f"/proc/{pid}").exists(), timeout, pause=0.05):
        return
    raise SupervisorError(f"supervisord (pid {pid}) did not stop within {timeout}s")
