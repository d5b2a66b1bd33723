"""`slapos node collect`: one run of the collector (node.md §12).

Snapshots every partition user's processes and the whole computer, stores them in
`<instance_root>/var/data-log/collector.db`, then writes today's CSV series, the dumps of
past days, the consumption journals `node report` sends to the master, the partitions'
monitor files, and drops reported rows older than `collect_cache` days.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from slapos.collect import report, snapshot
from slapos.collect.db import CollectorDB
from slapos.config import IniFile, NodeConfig, parse_bool, parse_int
from slapos.errors import ConfigError
from slapos.system import Clock, Runner, SystemClock
from slapos.wording import counted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectConfig:
    """What the collector reads from slapos.cfg ([slapos], [slapformat], [collect])."""

    computer_id: str
    instance_root: Path
    users: dict[str, Path]  # user name -> partition directory
    days_to_preserve: int = 15
    report_disk_usage: bool = True
    disk_pid_folder: Path | None = None
    disk_time_cycle: int = 86400
    measure_interval: float = snapshot.MEASURE_INTERVAL
    data_log: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_log", self.instance_root / "var" / "data-log")

    @classmethod
    def from_node_config(cls, config: NodeConfig) -> CollectConfig:
        ini = config.ini or IniFile.read(config.path)
        where = f"{config.path}: [slapformat]"
        amount = ini.get_int("slapformat", "partition_amount")
        if amount is None:
            raise ConfigError(f"{where} partition_amount is missing (needed by node collect)")
        user_base = (ini.get("slapformat", "user_base_name") or "").strip()
        if not user_base:
            raise ConfigError(f"{where} user_base_name is missing (needed by node collect)")
        part_base = (ini.get("slapformat", "partition_base_name") or "slappart").strip()
        root = config.instance_root
        users = {f"{user_base}{n}": root / f"{part_base}{n}" for n in range(amount)}
        collect = ini.section("collect")
        interval = collect.get("measure_interval")
        try:
            measure = float(interval) if interval else snapshot.MEASURE_INTERVAL
        except ValueError:
            raise ConfigError(
                f"{config.path}: [collect] measure_interval: expected seconds, got {interval!r}"
            ) from None
        pid_folder = collect.get("disk_snapshot_process_pid_foder")  # sic, upstream's key
        sensor = (ini.get("slapformat", "heating_sensor_id") or "").strip()
        if sensor not in ("", "no_sensor"):  # upstream's "no sensor" value
            # computer_model_id only labels that test's rows: without it, nothing to say
            log.warning(
                "%s heating_sensor_id = %s is accepted and ignored: the heating test is "
                "not implemented",
                where,
                sensor,
            )
        return cls(
            computer_id=config.computer_id,
            instance_root=root,
            users=users,
            days_to_preserve=config.collect_cache,
            report_disk_usage=parse_bool(
                collect.get("report_disk_usage", "true"),
                f"{config.path}: [collect] report_disk_usage",
            ),
            disk_pid_folder=Path(pid_folder) if pid_folder else root / "var" / "run",
            disk_time_cycle=parse_int(
                collect.get("disk_snapshot_time_cycle", "86400"),
                f"{config.path}: [collect] disk_snapshot_time_cycle",
            ),
            measure_interval=measure,
        )


@dataclass
class CollectResult:
    """What one run stored and wrote (for logs and tests)."""

    processes: int = 0
    folders: list[str] = field(default_factory=list)
    dumped_days: list[str] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    archives: list[Path] = field(default_factory=list)
    deleted_rows: int = 0


def _utc(clock: Clock) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(clock.time(), datetime.UTC)


def collect(
    config: CollectConfig, *, runner: Runner | None = None, clock: Clock | None = None
) -> CollectResult:
    """One collector run; raises SlapOSError subclasses only for configuration problems."""
    clock = clock or SystemClock()
    result = CollectResult()
    log.info("Collecting data...")
    report.mkdir(config.data_log)
    consumption_dir = config.instance_root / "var" / "consumption-report"
    report.mkdir(consumption_dir)
    xml_report_dir = config.instance_root / "var" / "xml_report" / config.computer_id
    report.mkdir(xml_report_dir)

    processes = snapshot.user_processes(config.users)
    system = snapshot.system_sample(config.measure_interval)  # the CPU measure window
    samples = [s for s in (snapshot.process_sample(p) for p in processes) if s is not None]
    disks = snapshot.disk_samples()
    computer = snapshot.computer_sample(disks)
    temperatures = snapshot.temperature_samples(runner)
    now = _utc(clock)
    date, time = now.strftime("%Y-%m-%d"), now.strftime("%H:%M:%S")

    with CollectorDB.open(config.data_log, now) as db:
        db.insert("computer", [computer.row(date, time)])
        db.insert("system", [system.row(date, time)])
        db.insert("disk", [d.row(date, time) for d in disks])
        db.insert("temperature", [t.row(date, time) for t in temperatures])
        db.commit()
        result.processes = db.insert("user", [s.row(date, time) for s in samples])
        db.commit()
        if config.report_disk_usage:
            for user, path in config.users.items():
                size = _folder_size(db, config, user, path, now)
                if size is not None:
                    db.insert("folder", [(user, size, date, time)])
                    db.commit()
                    result.folders.append(user)
        log.info(
            "stored %s of %s",
            counted(result.processes, "process sample"),
            counted(len(config.users), "partition user"),
        )

        report.write_system_csvs(db, config.data_log, date)
        result.dumped_days = report.dump_past_days(db, config.data_log, date)
        result.reports = report.write_consumption_reports(
            db, config.computer_id, list(config.users), now.date(), consumption_dir, xml_report_dir
        )
        report.write_monitor_files(db, config.users, now, clock.time())
        result.archives = report.compress_log_directory(config.data_log)
        result.deleted_rows = db.garbage_collect(config.days_to_preserve, now.date())
        if result.deleted_rows:
            log.info(
                "dropped %d reported rows older than %d days",
                result.deleted_rows,
                config.days_to_preserve,
            )
    log.info("Finished collecting.")
    return result


def _folder_size(
    db: CollectorDB, config: CollectConfig, user: str, path: Path, now: datetime.datetime
) -> float | None:
    """The partition's disk use in KiB, or None when it is not measured this time."""
    if not path.is_dir():
        return None
    last = db.last_folder_time(user)
    if last is not None and config.disk_time_cycle:
        elapsed = (now - last).total_seconds()
        if elapsed < config.disk_time_cycle:
            log.debug(
                "disk use of %s measured %d s ago (cycle %d s): not measuring",
                user,
                elapsed,
                config.disk_time_cycle,
            )
            return None
    pid_file = (
        config.disk_pid_folder or config.instance_root / "var" / "run"
    ) / f"{user}_disk_size.pid"
    if _alive(pid_file):
        log.warning("disk use of %s is still being measured by another run; try later", user)
        return None
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))
    try:
        size = snapshot.folder_size_kib(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
    if size <= 1024.0:
        log.debug("disk use of %s is %.0f KiB: not stored (empty partition)", user, size)
        return None
    return size


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip() or "0")
    except (FileNotFoundError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
