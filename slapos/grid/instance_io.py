"""What the instance engine keeps beside a partition's files: its local Partition, the
free-partition cleaning, the last report, the per-partition log; and the engine's plain
types (InstanceOptions, Node, Outcome, ProcessResult) and its view of supervisord
(Services). What it reads of the master's objects is slapos.grid.master.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from slapos.config import NodeConfig
from slapos.errors import ExitCode
from slapos.grid import partition as part
from slapos.grid import supervisor as sv
from slapos.grid.master import MasterPartition, software_url_of
from slapos.grid.utils import software_hash
from slapos.system import Clock, Runner

log = logging.getLogger(__name__)

INSTANCE_LOG_ROTATE = 20 * 1024 * 1024


def local_partition(config: NodeConfig, cp: MasterPartition) -> part.Partition:
    url = software_url_of(cp)
    return part.Partition(
        partition_id=cp.getId(),
        path=config.instance_root / cp.getId(),
        software_url=url,
        software_path=config.software_root / software_hash(url) if url else None,
        certificate_repository=config.certificate_repository_path,
    )


def clean_free_partition(path: Path) -> None:
    """A free partition keeps no slapgrid state (node.md §5.3)."""
    import shutil

    for name in (".slapgrid", ".timestamp"):
        p = path / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    with contextlib.suppress(FileNotFoundError):
        left = [n for n in os.listdir(path) if n != ".slapos-resource"]
        if left:
            log.warning("free partition %s is not empty: %s", path.name, ", ".join(sorted(left)))


def read_last_report(p: part.Partition) -> str | None:
    try:
        return (p.path / ".slapgrid" / "last-report").read_text().strip()
    except OSError:
        return None


def write_last_report(p: part.Partition, state: str) -> None:
    path = p.path / ".slapgrid" / "last-report"
    with contextlib.suppress(OSError):  # only an optimisation: the worst case is one more call
        path.parent.mkdir(exist_ok=True)
        path.write_text(state + "\n")


@contextlib.contextmanager
def partition_log(partition: part.Partition, is_root: bool) -> Iterator[Path]:
    """Copy slapos.grid logging to <partition>/.slapgrid/log/instance.log meanwhile."""
    path = partition.instance_log
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if is_root:
        st = partition.path.stat()
        for p in (path.parent.parent, path.parent):
            os.chown(p, st.st_uid, st.st_gid)
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size >= INSTANCE_LOG_ROTATE:
            os.replace(path, path.with_name(path.name + ".1"))
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-8s %(name)s %(message)s"))
    logger = logging.getLogger("slapos.grid")
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.DEBUG)  # the file gets everything; console handlers filter
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


@dataclass(frozen=True)
class Outcome:
    partition_id: str
    status: str  # processed | skipped | failed | promise-failed | free
    seconds: float = 0.0
    error: str = ""
    software_type: str = ""
    log_file: Path | None = None


@dataclass
class ProcessResult:
    outcomes: list[Outcome] = field(default_factory=list)
    offline: bool = False
    offline_failed: bool = False

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def promise_failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "promise-failed"]

    @property
    def exit_code(self) -> int:
        if self.failed or self.offline_failed:
            return ExitCode.FAILURE
        if self.promise_failed:
            return ExitCode.PROMISE_FAILURE
        if self.offline:
            return ExitCode.OFFLINE_SUCCESS
        return ExitCode.OK


@dataclass(frozen=True)
class InstanceOptions:
    """The options of one `node instance` (or `node promise`, `node report`) run."""

    force: bool = False
    force_stop: bool = False
    only_cp: tuple[str, ...] = ()
    buildout_debug: bool = False
    supervisord: bool = True  # False: forbid_supervisord_automatic_launch


@dataclass(frozen=True)
class Node:
    """The world the engine acts in: configuration plus injected OS objects."""

    config: NodeConfig
    runner: Runner
    clock: Clock
    environ: Mapping[str, str]
    is_root: bool


class ServiceControl(Protocol):
    """What the engines need of supervisord: `Services` is the real one."""

    def prepare(self, node: Node, watchdog_command: str, launch: bool) -> None: ...
    def start(self, instance_root: Path, partition_id: str, path: Path) -> None: ...
    def stop(self, instance_root: Path, partition_id: str, all_files: bool = False) -> None: ...
    def start_all(self, instance_root: Path) -> None: ...
    def states(self, instance_root: Path, names: list[str]) -> dict[str, str]: ...


class Services:
    """The engine's view of supervisord (a ServiceControl)."""

    def prepare(self, node: Node, watchdog_command: str, launch: bool) -> None:
        root = node.config.instance_root
        paths = sv.write_supervisord_config(root, watchdog_command)
        if not launch:
            return
        if not paths.changed and sv.supervisord_alive(root):
            # Nothing to tell it: spare the XML-RPC round trips of a run with nothing to do.
            return
        sv.ensure_supervisord(root, node.runner)

    def start(self, instance_root: Path, partition_id: str, path: Path) -> None:
        sv.start_partition(instance_root, partition_id, path)

    def stop(self, instance_root: Path, partition_id: str, all_files: bool = False) -> None:
        sv.stop_partition(instance_root, partition_id, all_files=all_files)

    def start_all(self, instance_root: Path) -> None:
        """Start every partition's services (offline mode).

        Only partitions' program groups: other programs of this supervisord (the local
        proxy of `configure local`) keep the state their admin left them in.
        """
        partitions = [
            entry
            for entry in os.listdir(instance_root)
            if not entry.startswith(".")
            and entry not in ("etc", "var")
            and (instance_root / entry).is_dir()
        ]
        with sv.connect(instance_root) as s:
            s.reload()
            groups = {str(p["group"]) for p in s.all_processes()}
            for group in sorted(groups):
                if any(group == pid or group.startswith(f"{pid}-") for pid in partitions):
                    s.start_group(group)

    def states(self, instance_root: Path, names: list[str]) -> dict[str, str]:
        return sv.process_states(instance_root, names)
