"""Snapshots of what the machine and each partition user consume (psutil).

Each snapshot is a frozen dataclass whose `row(date, time)` is the database row. psutil is
the only library used; temperatures come from `sensors -u` through a Runner.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

import psutil

from slapos.system import Runner

log = logging.getLogger(__name__)

#: seconds over which CPU use is measured (upstream: 5).
MEASURE_INTERVAL = 5.0
#: temperature limits when a sensor gives none (upstream's value).
NO_LIMIT = 1000.0


class _Row:
    """A sample (a dataclass) whose row in the collector's table is its fields in order,
    then the date and time of the snapshot."""

    def row(self, date: str, time: str) -> tuple[object, ...]:
        return (*astuple(self), date, time)  # type: ignore[call-overload]


@dataclass(frozen=True)
class ProcessSample(_Row):
    user: str
    pid: int
    process: str  # "<pid>-<create time>": identifies the process, not its command line
    cpu_percent: float
    cpu_time: float
    cpu_num_threads: int
    memory_percent: float
    memory_rss: int
    io_rw_counter: int
    io_cycles_counter: int


@dataclass(frozen=True)
class SystemSample(_Row):
    loadavg: float
    cpu_percent: float
    memory_used: int
    memory_free: int
    net_in_bytes: int
    net_in_errors: int
    net_in_dropped: int
    net_out_bytes: int
    net_out_errors: int
    net_out_dropped: int


@dataclass(frozen=True)
class DiskSample:
    partition: str  # the device
    used: int
    free: int
    mountpoint: str
    total: int

    def row(self, date: str, time: str) -> tuple[object, ...]:
        return (self.partition, self.used, self.free, self.mountpoint, date, time)


@dataclass(frozen=True)
class ComputerSample:
    cpu_num_core: int
    memory_size: int
    partition_list: str  # "dev=totalbytes;..."

    def row(self, date: str, time: str) -> tuple[object, ...]:
        # cpu_frequency, cpu_type and memory_type are always 0, as upstream
        return (self.cpu_num_core, 0, 0, self.memory_size, 0, self.partition_list, date, time)


@dataclass(frozen=True)
class TemperatureSample(_Row):
    sensor_id: str
    temperature: float
    alarm: int  # 0 below max, 1 at or above max, 2 at or above critical


# ---- processes --------------------------------------------------------------------


def user_processes(users: Collection[str]) -> list[psutil.Process]:
    """Running processes owned by one of `users`, their CPU counters primed."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.username() in users:
                proc.cpu_percent(None)  # first call starts the measure window
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            # only root reads every process; a hardened /proc may hide a few even from root
            log.debug("cannot read process %s: access denied", proc.pid)
            continue
    return found


def process_sample(proc: psutil.Process) -> ProcessSample | None:
    """A snapshot of one process; None if it ended meanwhile."""
    try:
        with proc.oneshot():
            io = proc.io_counters()
            return ProcessSample(
                user=proc.username(),
                pid=proc.pid,
                process=f"{proc.pid}-{proc.create_time()}",
                cpu_percent=proc.cpu_percent(None),
                cpu_time=float(sum(proc.cpu_times())),
                cpu_num_threads=proc.num_threads(),
                memory_percent=proc.memory_percent(),
                memory_rss=proc.memory_info().rss,
                io_rw_counter=io.read_bytes + io.write_bytes,
                io_cycles_counter=io.read_count + io.write_count,
            )
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        log.warning("cannot read process %s of a partition user: access denied", proc.pid)
        return None


# ---- the machine ------------------------------------------------------------------


def system_sample(interval: float = MEASURE_INTERVAL) -> SystemSample:
    """Load, CPU use over `interval` seconds (blocks that long), memory, network."""
    idle = psutil.cpu_times_percent(interval=interval).idle
    memory = psutil.virtual_memory()
    net = psutil.net_io_counters()
    return SystemSample(
        loadavg=os.getloadavg()[0],
        cpu_percent=100.0 - idle,
        memory_used=memory.total - memory.available,
        memory_free=memory.available,
        net_in_bytes=net.bytes_recv,
        net_in_errors=net.errin,
        net_in_dropped=net.dropin,
        net_out_bytes=net.bytes_sent,
        net_out_errors=net.errout,
        net_out_dropped=net.dropout,
    )


def disk_samples() -> list[DiskSample]:
    """One sample per distinct mounted device."""
    seen: set[str] = set()
    samples = []
    for part in psutil.disk_partitions():
        if part.device in seen:
            continue
        seen.add(part.device)
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError as exc:  # a stale network mount: skip it, keep the others
            log.debug("cannot measure %s: %s", part.mountpoint, exc)
            continue
        samples.append(
            DiskSample(part.device, usage.used, usage.free, part.mountpoint, usage.total)
        )
    return samples


def computer_sample(disks: list[DiskSample]) -> ComputerSample:
    return ComputerSample(
        cpu_num_core=psutil.cpu_count() or 0,
        memory_size=psutil.virtual_memory().total,
        partition_list=";".join(f"{d.partition}={d.total}" for d in disks),
    )


def parse_sensors(text: str) -> list[TemperatureSample]:
    """Temperatures from the output of `sensors -u`."""
    samples = []
    chip = ""
    readings: dict[str, dict[str, float]] = {}
    order: list[str] = []
    feature = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            chip, feature = "", ""
            continue
        if not raw.startswith(" ") and not line.endswith(":"):
            if not chip and not line.startswith("Adapter:"):
                chip = line.strip()  # the first line of a block names the chip
            continue
        if not raw.startswith(" ") and line.endswith(":"):
            feature = line[:-1].strip()
            continue
        name, _, value = line.strip().partition(":")
        if not name.startswith("temp") or not feature:
            continue
        kind = name.split("_", 1)[1] if "_" in name else ""
        try:
            number = float(value)
        except ValueError:
            continue
        key = f"{chip}/{feature}" if chip else feature
        if key not in readings:
            readings[key] = {}
            order.append(key)
        readings[key][kind] = number
    for key in order:
        values = readings[key]
        if "input" not in values:
            continue
        current = values["input"]
        maximum = values.get("max", NO_LIMIT)
        critical = values.get("crit", NO_LIMIT)
        alarm = 2 if current >= critical else 1 if current >= maximum else 0
        samples.append(TemperatureSample(key, current, alarm))
    return samples


def temperature_samples(runner: Runner | None) -> list[TemperatureSample]:
    """Temperatures from lm-sensors; none (silently) where there are no sensors."""
    if runner is None:
        return []
    done = runner.run(["sensors", "-u"], timeout=30)
    if done.returncode == 127:
        log.debug("lm-sensors is not installed: no temperature")
        return []
    if not done.ok:
        if "No sensors found" in done.output:
            return []
        log.warning("sensors -u failed (%s): %s", done.returncode, done.tail(2))
        return []
    return parse_sensors(done.output)


# ---- partitions' disk use ---------------------------------------------------------


def folder_size_kib(path: Path) -> float:
    """Disk use of `path` in KiB, counting hard links once (what `du -s` reports), plus
    the directories linked from `<path>/DATA/` (extra disks of the partition)."""
    seen: set[tuple[int, int]] = set()
    total = _tree_blocks(path, seen)
    data = path / "DATA"
    if data.is_dir():
        for entry in sorted(data.iterdir()):
            if entry.is_symlink() and entry.is_dir():
                total += _tree_blocks(entry.resolve(), seen)
    return total * 512 / 1024


def _tree_blocks(root: Path, seen: set[tuple[int, int]]) -> int:
    blocks = 0
    stack = [str(root)]
    try:
        st = os.lstat(root)
    except OSError:
        return 0
    seen.add((st.st_dev, st.st_ino))
    blocks += st.st_blocks
    while stack:
        top = stack.pop()
        try:
            entries: Iterator[os.DirEntry[str]] = os.scandir(top)
        except OSError:
            continue
        with entries as it:  # type: ignore[attr-defined]
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in seen:
                    continue
                seen.add(ident)
                blocks += st.st_blocks
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return blocks
