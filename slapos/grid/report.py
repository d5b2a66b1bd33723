"""`slapos node report`: usage reports, and the destruction of destroyed partitions
(node.md §9.1–§9.2).

A destroyed partition is emptied only when its services are stopped, its retention delay
is over and its `sbin/destroy` (if any) succeeded; only then is it reported destroyed,
and the master may hand it out again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slapos.config import NodeConfig
from slapos.errors import ExitCode, SlapOSError
from slapos.grid import buildout, instance_io
from slapos.grid import partition as part
from slapos.grid.instance import InstanceEngine
from slapos.grid.instance_apply import refresh_certificates
from slapos.grid.instance_plan import DESTROYED
from slapos.grid.master import MasterComputer, MasterPartition, is_free, offline_errors
from slapos.system import Credentials

log = logging.getLogger(__name__)

WAIT_SERVICE_FILE = ".slapos-report-wait-service-list"

#: Sends the node's pending consumption reports: slapos.collect.usage.report_usage, given by
#: the command (the grid does not import collect, beside it in the layering).
UsageSender = Callable[[NodeConfig, MasterComputer], object]


@dataclass
class ReportResult:
    destroyed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # retention or waiting services
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return ExitCode.FAILURE if self.failed else ExitCode.OK


@dataclass
class ReportPlan:
    """What a `node report` run would do (--dry-run)."""

    report_scripts: dict[str, list[str]] = field(default_factory=dict)
    destroy: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def changes_something(self) -> bool:
        return bool(self.report_scripts or self.destroy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_scripts": self.report_scripts,
            "destroy": self.destroy,
            "kept": self.kept,
            "changes_something": self.changes_something,
        }


def retention_until(p: part.Partition, now: float) -> float | None:
    """When the retention delay lets the partition go (None: no retention); reads only.

    A delay without a date file means the real run starts the clock now."""
    try:
        delay = float((p.path / part.RETENTION_DELAY_FILE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        delay = 0.0
    try:
        return float((p.path / part.RETENTION_DATE_FILE).read_text().strip())
    except FileNotFoundError:
        return now + delay * 86400 if delay > 0 else None
    except ValueError:
        return float("inf")


class ReportEngine:
    def __init__(
        self,
        node: instance_io.Node,
        computer: MasterComputer | None = None,
        services: instance_io.ServiceControl | None = None,
        send_usage: UsageSender | None = None,
    ) -> None:
        self.node = node
        self.config = node.config
        self.services: instance_io.ServiceControl = services or instance_io.Services()
        self.send_usage = send_usage
        self._engine = InstanceEngine(
            node, instance_io.InstanceOptions(), computer, services=self.services
        )

    def run(self) -> ReportResult:
        self._engine.prepare_supervisord()
        result = ReportResult()
        partitions = [cp for cp in self._engine.partitions() if not is_free(cp)]
        for cp in partitions:
            p = instance_io.local_partition(self.config, cp)
            if not p.path.is_dir():
                continue
            self._run_report_scripts(cp, p, result)
        self._send_usage()
        for cp in partitions:
            if cp.getState() != DESTROYED:
                continue
            p = instance_io.local_partition(self.config, cp)
            if not p.path.is_dir():
                continue
            try:
                self._destroy(cp, p, result)
            except offline_errors():
                raise
            except (SlapOSError, OSError) as exc:
                log.error("%s: destruction failed: %s", p.partition_id, exc)
                result.failed.append((p.partition_id, str(exc)))
                with contextlib.suppress(SlapOSError):
                    cp.error(f"destruction failed: {exc}")
        return result

    def plan(self) -> ReportPlan:
        """What `run()` would do, read from the master and the partitions; writes nothing."""
        result = ReportPlan()
        now = self.node.clock.time()
        for cp in self._engine.partitions():
            if is_free(cp):
                continue
            p = instance_io.local_partition(self.config, cp)
            if not p.path.is_dir():
                continue
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                scripts = sorted(os.listdir(p.path / "etc" / "report"))
                if scripts:
                    result.report_scripts[p.partition_id] = scripts
            if cp.getState() != DESTROYED:
                continue
            waiting = self._planned_wait(p)
            if waiting:
                result.kept[p.partition_id] = waiting
                continue
            until = retention_until(p, now)
            if until is not None and now < until:
                import time

                when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))
                result.kept[p.partition_id] = f"stopped; retention lock until {when}"
                continue
            destroy = " (its sbin/destroy first)" if (p.path / "sbin" / "destroy").exists() else ""
            result.destroy[p.partition_id] = f"services removed, partition emptied{destroy}"
        return result

    def _planned_wait(self, p: part.Partition) -> str:
        """Why the destruction waits for services ("" when it does not)."""
        from slapos.grid import supervisor

        try:
            names = (p.path / WAIT_SERVICE_FILE).read_text().split()
        except FileNotFoundError:
            return ""
        try:
            states = self.services.states(self.config.instance_root, names)
        except (supervisor.SupervisorError, OSError):
            return f"stopped; destroyed only once {', '.join(names)} no longer run (unknown)"
        running = sorted(n for n, st in states.items() if st in ("RUNNING", "STARTING"))
        if running:
            return f"stopped; waiting for {', '.join(running)} before destruction"
        return ""

    def _run_report_scripts(
        self, cp: MasterPartition, p: part.Partition, result: ReportResult
    ) -> None:
        folder = p.path / "etc" / "report"
        try:
            scripts = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        out_dir = p.path / "var" / "xml_report"
        out_dir.mkdir(parents=True, exist_ok=True)
        owner = Credentials.owner_of(p.path)
        if self.node.is_root:
            os.chown(out_dir, owner.uid, owner.gid)
        failed = []
        for name in scripts:
            fd, tmp = tempfile.mkstemp(prefix="slapreport.", dir=out_dir)
            os.close(fd)
            os.unlink(tmp)
            done = self.node.runner.run(
                [str(folder / name), tmp],
                cwd=folder,
                env=buildout.clean_environment(self.node.environ, p.path),
                user=owner,
            )
            if not done.ok:
                failed.append(f"Script {name!r} failed.")
        if failed:
            message = "\n".join(failed)
            result.failed.append((p.partition_id, message))
            with contextlib.suppress(SlapOSError):
                cp.error(message)

    def _send_usage(self) -> None:
        """Pending consumption reports, when the engine was given how to send them."""
        if self.send_usage is not None:
            self.send_usage(self.config, self._engine.computer())

    def _destroy(self, cp: MasterPartition, p: part.Partition, result: ReportResult) -> None:
        root = self.config.instance_root
        self.services.stop(root, p.partition_id)
        refresh_certificates(self.node, cp, p)
        with contextlib.suppress(SlapOSError):
            cp.stopped()
        if self._waiting_services(p):
            log.info("%s: waiting for services before destruction", p.partition_id)
            result.kept.append(p.partition_id)
            return
        if p.retention_refuses(self.node.clock.time()):
            log.info(
                "%s: impossible to destroy partition yet because of retention lock",
                p.partition_id,
            )
            result.kept.append(p.partition_id)
            return
        destroy = p.path / "sbin" / "destroy"
        if destroy.exists():
            done = self.node.runner.run(
                [str(destroy)],
                cwd=p.path,
                env=buildout.clean_environment(self.node.environ, p.path),
                user=Credentials.owner_of(p.path),
            )
            if not done.ok:
                raise SlapOSError(f"{destroy} failed (status {done.returncode}): {done.tail(5)}")
        p.remove_certificates()
        self._empty_storage(p)
        p.empty()
        self.services.stop(root, p.partition_id, all_files=True)
        try:
            cp.destroyed()
        except SlapOSError as exc:
            # NotFound / server errors: the master forgot it already; nothing to undo.
            log.warning("%s: master did not take the destruction: %s", p.partition_id, exc)
        log.info("%s: destroyed", p.partition_id)
        result.destroyed.append(p.partition_id)

    def _waiting_services(self, p: part.Partition) -> bool:
        try:
            names = (p.path / WAIT_SERVICE_FILE).read_text().split()
        except FileNotFoundError:
            return False
        states = self.services.states(self.config.instance_root, names)
        return any(s in ("RUNNING", "STARTING") for s in states.values())

    def _empty_storage(self, p: part.Partition) -> None:
        home = self.config.instance_storage_home
        data = p.path / "DATA"
        if not home or not data.is_dir():
            return
        import shutil

        for entry in os.listdir(data):
            with contextlib.suppress(FileNotFoundError):
                (data / entry).unlink()
            target = os.path.join(home, entry, p.partition_id)
            if os.path.isdir(target):
                for child in os.listdir(target):
                    path = os.path.join(target, child)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)
