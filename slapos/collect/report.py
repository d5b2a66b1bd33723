"""What `node collect` writes from its database: CSV series, daily dumps, consumption
journals for the master, per-partition monitor files, compressed archives.
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import os
import re
import shutil
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from slapos.collect.db import CollectorDB
from slapos.system import write_file_atomic

log = logging.getLogger(__name__)

KIB = 1024
MIB = 1024.0 * 1024.0
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_SYSTEM_ITEMS = (
    # (file item, column index, divisor, is a counter whose deltas are reported)
    ("loadavg", 0, 1, False),
    ("cpu_percent", 1, 1, False),
    ("memory_used", 2, KIB, False),
    ("memory_free", 3, KIB, False),
    ("net_in_bytes", 4, KIB, True),
    ("net_in_errors", 5, 1, False),
    ("net_in_dropped", 6, 1, False),
    ("net_out_bytes", 7, KIB, True),
    ("net_out_errors", 8, 1, False),
    ("net_out_dropped", 9, 1, False),
)


def mkdir(path: Path, mode: int = 0o755) -> None:
    """Create `path` (and parents) and make sure it has `mode`."""
    path.mkdir(parents=True, exist_ok=True)
    if (path.stat().st_mode & 0o7777) != mode:
        os.chmod(path, mode)


def _write_csv(path: Path, rows: Iterable[Sequence[Any]], header: Sequence[str] | None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# ---- today's series ----------------------------------------------------------------


def write_system_csvs(db: CollectorDB, directory: Path, today: str) -> list[Path]:
    """`system_<item>.csv` (header `time,entry`) for today's samples; the first sample of
    the day only seeds the network deltas, as upstream."""
    written = []
    samples = db.query(
        "select loadavg, cpu_percent, memory_used, memory_free, net_in_bytes, net_in_errors, "
        "net_in_dropped, net_out_bytes, net_out_errors, net_out_dropped, date, time "
        "from system where date = ? order by time",
        (today,),
    )
    series: dict[str, list[tuple[str, float]]] = {item: [] for item, *_ in _SYSTEM_ITEMS}
    previous: tuple[Any, ...] | None = None
    for sample in samples:
        if previous is not None:
            when = f"{sample[10]} {sample[11]}"
            for item, index, divisor, counter in _SYSTEM_ITEMS:
                value = float(sample[index] or 0)
                if counter:
                    value -= float(previous[index] or 0)
                series[item].append((when, value / divisor))
        previous = sample
    for item, entries in series.items():
        path = directory / f"system_{item}.csv"
        _write_csv(path, entries, ("time", "entry"))
        written.append(path)
    disks: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for device, used, free, date, time in db.query(
        "select partition, used, free, date, time from disk where date = ? order by time",
        (today,),
    ):
        entry = disks.setdefault(device, {"used": [], "free": []})
        when = f"{date} {time}"
        entry["used"].append((when, float(used) / KIB))
        entry["free"].append((when, float(free) / KIB))
    for device, values in disks.items():
        name = device.replace("-", "_").replace("/", "_")
        for kind, entries in values.items():
            path = directory / f"system_disk_memory_{kind}_{name}.csv"
            _write_csv(path, entries, ("time", "entry"))
            written.append(path)
    return written


# ---- daily dumps ---------------------------------------------------------------------


def dump_past_days(db: CollectorDB, directory: Path, today: str) -> list[str]:
    """For each past day with unreported rows: `<day>/dump_<table>.csv` for every table
    (no header, every column), then mark the day reported. Returns the days."""
    days = db.unreported_dates(ignore=today)
    tables = db.table_list()
    for day in days:
        folder = directory / day
        mkdir(folder)
        for table in tables:
            _write_csv(folder / f"dump_{table}.csv", db.iter_rows(table, day), None)
        db.mark_day_reported(day)
        db.commit()
        log.debug("dumped and marked %s as reported", day)
    return days


def compress_log_directory(directory: Path) -> list[Path]:
    """Pack every `YYYY-MM-DD/` folder into `YYYY-MM-DD.tar.gz` and remove the folder."""
    archives = []
    for folder in sorted(directory.iterdir()):
        if not (folder.is_dir() and _DATE_DIR.match(folder.name)):
            continue
        target = directory / f"{folder.name}.tar.gz"
        n = 1
        while target.exists():  # never overwrite an earlier archive of the same day
            target = directory / f"{folder.name}.{n}.tar.gz"
            n += 1
        tmp = target.with_name(f".{target.name}.tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        os.replace(tmp, target)
        shutil.rmtree(folder)
        archives.append(target)
    return archives


# ---- consumption journal --------------------------------------------------------------


def _prop(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, name).text = value


def _movement(
    transaction: ET.Element, resource: str, title: str, quantity: float, reference: str
) -> None:
    movement = ET.SubElement(transaction, "movement")
    _prop(movement, "resource", resource)
    _prop(movement, "title", title)
    _prop(movement, "reference", reference)
    _prop(movement, "quantity", str(quantity))
    _prop(movement, "price", "0.0")
    _prop(movement, "VAT", "")
    _prop(movement, "category", "")


def _average_per_sample(
    db: CollectorDB, table: str, column: str, user: str, day: str
) -> float | None:
    total = db.scalar(
        f"select sum({column}) from {table} where date = ? and partition = ?", (day, user)
    )
    if total is None:
        return None
    samples = db.scalar(
        f"select count(distinct time) from {table} where date = ? and partition = ?", (day, user)
    )
    return float(total) / samples if samples else None


#: (table, column, resource, title, divisor): the per-user daily averages of the journal,
#: in upstream's order.
_PER_USER_AVERAGES: tuple[tuple[str, str, str, str, float], ...] = (
    ("user", "cpu_percent", "service_module/cpu_load_percent", "CPU Load Percent Average", 1),
    ("user", "memory_rss", "service_module/memory_used", "Memory Used Average", MIB),
    ("folder", "disk_used", "service_module/disk_used", "Partition Disk Used Average", 1024.0),
)


def consumption_journal(db: CollectorDB, computer_id: str, users: Sequence[str], day: str) -> bytes:
    """The day's consumption as a journal XML (computer_consumption format)."""
    journal = ET.Element("journal")
    transaction = ET.SubElement(journal, "transaction", type="Sale Packing List")
    _prop(transaction, "title", f"Eco Information for {computer_id} ")
    _prop(transaction, "start_date", f"{day} 00:00:00")
    _prop(transaction, "stop_date", f"{day} 23:59:59")
    _prop(transaction, "reference", f"{day}-global")
    _prop(transaction, "currency", "")
    _prop(transaction, "payment_mode", "")
    _prop(transaction, "category", "")
    ET.SubElement(transaction, "arrow", type="Destination")
    cpu = db.scalar("select sum(cpu_percent)/count(cpu_percent) from system where date = ?", (day,))
    if cpu is not None:
        _movement(
            transaction,
            "service_module/cpu_load_percent",
            "CPU Load Percent Average",
            cpu,
            computer_id,
        )
    memory = db.scalar(
        "select sum(memory_used)/count(memory_used) from system where date = ?", (day,)
    )
    if memory is not None:
        _movement(transaction, "service_module/memory_used", "Used Memory", memory, computer_id)
    _movement(
        transaction,
        "service_module/zero_emission_ratio",
        "Zero Emission Ratio",
        db.last_zero_emission_ratio(),
        computer_id,
    )
    for table, column, resource, title, scale in _PER_USER_AVERAGES:
        for user in users:
            value = _average_per_sample(db, table, column, user, day)
            if value is not None:
                _movement(transaction, resource, f"{title} for {user}", value / scale, user)
    # lxml's spelling, so the file is upstream's byte for byte: an element given empty text
    # is `<VAT></VAT>`, the text-less arrow is `<arrow type="Destination"/>`
    text = ET.tostring(journal, encoding="unicode", short_empty_elements=False)
    text = text.replace('<arrow type="Destination"></arrow>', '<arrow type="Destination"/>')
    return ("<?xml version='1.0' encoding='utf-8'?>" + text).encode("utf-8")


def write_consumption_reports(
    db: CollectorDB,
    computer_id: str,
    users: Sequence[str],
    today: datetime.date,
    report_directory: Path,
    xml_report_directory: Path,
) -> list[Path]:
    """Journals of yesterday and the day before, each written once, copied for `node report`."""
    written = []
    for back in (1, 2):
        day = (today - datetime.timedelta(days=back)).isoformat()
        path = report_directory / f"{day}.xml"
        if path.exists() or path.with_name(path.name + ".uploaded").exists():
            continue
        data = consumption_journal(db, computer_id, users, day)
        write_file_atomic(path, data.decode("utf-8"))
        shutil.copy(path, xml_report_directory / path.name)
        written.append(path)
        log.info("consumption report for %s written", day)
    return written


# ---- per-partition monitor files --------------------------------------------------------

_DATA_FILES = {
    "process": (
        "monitor_resource_process.data.json",
        "date, total process, CPU percent, CPU time, CPU threads",
    ),
    "memory": ("monitor_resource_memory.data.json", "date, memory used percent, memory used"),
    "io": ("monitor_resource_io.data.json", "date, io rw counter, io cycles counter, disk used"),
}


def _append_data(path: Path, header: str, row: str, now: float) -> None:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(content, dict) and isinstance(content.get("data"), list)):
            raise ValueError("unexpected layout")
    except FileNotFoundError:
        content = {"date": now, "data": [header]}
    except ValueError:
        log.warning("%s is not a monitor data file; starting it again", path)
        content = {"date": now, "data": [header]}
    if row:
        content["data"].append(row)
    write_file_atomic(path, json.dumps(content))


def write_monitor_files(
    db: CollectorDB, users: Mapping[str, Path], now: datetime.datetime, clock_time: float
) -> None:
    """For partitions that have `.slapgrid/`: the previous minute's figures (monitor stack)."""
    minute = now - datetime.timedelta(minutes=1)
    day = minute.strftime("%Y-%m-%d")
    low, high = minute.strftime("%H:%M:00"), minute.strftime("%H:%M:59")
    for user, path in users.items():
        if not (path / ".slapgrid").is_dir():
            continue
        folder = path / ".slapgrid" / "monitor"
        mkdir(folder)
        stamp = f"{day} {low}"
        (count, cpu, cpu_time, threads, mem_pct, rss, io_rw, io_cycles) = db.query(
            "select count(pid), sum(cpu_percent), sum(cpu_time), sum(cpu_num_threads), "
            "sum(memory_percent), sum(memory_rss), sum(io_rw_counter), sum(io_cycles_counter) "
            "from user where date = ? and partition = ? and time between ? and ?",
            (day, user, low, high),
        )[0]
        disk = db.scalar(
            "select sum(disk_used) from folder where date = ? and partition = ? "
            "and time between ? and ?",
            (day, user, low, high),
        )
        process = {
            "total_process": count,
            "cpu_percent": round(cpu or 0, 2),
            "cpu_time": round((cpu_time or 0) / 60, 2),
            "cpu_num_threads": round(threads or 0, 2),
            "date": stamp,
        }
        memory = {
            "memory_percent": round(mem_pct or 0, 2),
            "memory_rss": round((rss or 0) / MIB, 2),
            "date": stamp,
        }
        io = {
            "io_rw_counter": round(io_rw or 0, 2),
            "io_cycles_counter": round(io_cycles or 0, 2),
            "disk_used": round(disk / 1024, 2) if disk is not None else 0,
            "date": stamp,
        }
        status: dict[str, Any] = {}
        rows = {
            "process": ([stamp, count, process["cpu_percent"], process["cpu_time"],
                         process["cpu_num_threads"]], bool(count)),
            "memory": ([stamp, memory["memory_percent"], memory["memory_rss"]],
                       bool(memory["memory_rss"])),
            "io": ([stamp, io["io_rw_counter"], io["io_cycles_counter"], io["disk_used"]],
                   bool(io["io_rw_counter"])),
        }  # fmt: skip
        for kind, (name, header) in _DATA_FILES.items():
            values, present = rows[kind]
            _append_data(
                folder / name,
                header,
                ", ".join(str(v) for v in values) if present else "",
                clock_time,
            )
        if count:
            status.update(process)
        if memory["memory_rss"]:
            status.update(memory)
        if io["io_rw_counter"]:
            status.update(io)
        write_file_atomic(folder / "monitor_resource.status.json", json.dumps(status))
        per_process = _process_status(db, user, day, low, high)
        if per_process:
            write_file_atomic(
                folder / "monitor_process_resource.status.json", json.dumps(per_process)
            )


def _process_status(
    db: CollectorDB, user: str, day: str, low: str, high: str
) -> list[dict[str, Any]]:
    import psutil

    result = []
    for count, cpu, cpu_time, threads, mem_pct, rss, pid, io_rw, io_cycles in db.query(
        "select count(pid), sum(cpu_percent) as cpu_result, sum(cpu_time), max(cpu_num_threads), "
        "sum(memory_percent), sum(memory_rss), pid, sum(io_rw_counter), sum(io_cycles_counter) "
        "from user where date = ? and partition = ? and time between ? and ? "
        "group by pid order by cpu_result desc",
        (day, user, low, high),
    ):
        if not count:
            continue
        entry: dict[str, Any] = {
            "pid": pid,
            "cpu_percent": round(cpu / count, 2),
            "cpu_time": round((cpu_time or 0) / 60, 2),
            "cpu_num_threads": round(threads / count, 2),
            "memory_percent": round(mem_pct / count, 2),
            "memory_rss": round((rss or 0) / MIB, 2),
            "io_rw_counter": round(io_rw / count, 2),
            "io_cycles_counter": round(io_cycles / count, 2),
        }
        try:
            proc = psutil.Process(int(pid))
            entry.update(
                name=proc.name(),
                command=proc.cmdline(),
                user=proc.username(),
                date=datetime.datetime.fromtimestamp(proc.create_time()).strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        result.append(entry)
    return result
