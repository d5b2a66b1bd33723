from __future__ import annotations

import datetime
import json
import tarfile
from pathlib import Path

from slapos.collect.db import CollectorDB
from slapos.collect.report import (
    compress_log_directory,
    consumption_journal,
    dump_past_days,
    write_consumption_reports,
    write_monitor_files,
    write_system_csvs,
)
from slapos.collect.usage import check_journal


def test_system_csvs_deltas(tmp_path: Path) -> None:
    with CollectorDB.open(tmp_path) as db:
        for n, (net_in, used) in enumerate(((1024, 2048), (3072, 4096), (7168, 1024))):
            db.insert(
                "system",
                [(0.5, 20 + n, used, 100, net_in, 0, 0, 0, 0, 0, "2026-03-20", f"10:0{n}:00")],
            )
        db.insert("disk", [("/dev/mapper/vg-root", 2048, 1024, "/", "2026-03-20", "10:00:00")])
        write_system_csvs(db, tmp_path, "2026-03-20")
    lines = (tmp_path / "system_net_in_bytes.csv").read_text().splitlines()
    assert lines == ["time,entry", "2026-03-20 10:01:00,2.0", "2026-03-20 10:02:00,4.0"]
    assert (tmp_path / "system_memory_used.csv").read_text().splitlines()[1:] == [
        "2026-03-20 10:01:00,4.0",
        "2026-03-20 10:02:00,1.0",
    ]
    disk = tmp_path / "system_disk_memory_used__dev_mapper_vg_root.csv"
    assert disk.read_text().splitlines() == ["time,entry", "2026-03-20 10:00:00,2.0"]


def test_dump_past_days_and_compress(tmp_path: Path) -> None:
    with CollectorDB.open(tmp_path) as db:
        for day in ("2026-03-18", "2026-03-20"):
            db.insert("system", [(0.5, 20, 1, 1, 1, 0, 0, 0, 0, 0, day, "10:00:00")])
            db.insert("user", [("u0", 1, "1-1", 1, 1, 1, 1, 1, 1, 1, day, "10:00:00")])
        db.commit()
        assert dump_past_days(db, tmp_path, "2026-03-20") == ["2026-03-18"]
        assert dump_past_days(db, tmp_path, "2026-03-20") == []  # marked reported
    folder = tmp_path / "2026-03-18"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"dump_{t}.csv"
        for t in ("user", "folder", "computer", "system", "disk", "temperature", "heating")
    )
    assert (folder / "dump_user.csv").read_text().strip() == (
        "u0,1.0,1-1,1.0,1.0,1.0,1.0,1.0,1.0,1.0,2026-03-18,10:00:00,0"
    )
    assert (folder / "dump_folder.csv").read_text() == ""
    (archive,) = compress_log_directory(tmp_path)
    assert archive.name == "2026-03-18.tar.gz" and not folder.exists()
    with tarfile.open(archive) as tar:
        assert "2026-03-18/dump_user.csv" in tar.getnames()
    # a second dump of the same day never overwrites the first archive
    folder.mkdir()
    (folder / "dump_user.csv").write_text("late")
    (second,) = compress_log_directory(tmp_path)
    assert second.name == "2026-03-18.1.tar.gz" and archive.exists()


def test_consumption_journal(tmp_path: Path) -> None:
    day = "2026-03-19"
    with CollectorDB.open(tmp_path) as db:
        db.insert("system", [(0.5, 10, 100, 1, 1, 0, 0, 0, 0, 0, day, "10:00:00")])
        db.insert("system", [(0.5, 30, 300, 1, 1, 0, 0, 0, 0, 0, day, "11:00:00")])
        mib = 1024 * 1024
        db.insert(
            "user",
            [
                ("u0", 1, "1-1", 10, 1, 1, 1, 10 * mib, 0, 0, day, "10:00:00"),
                ("u0", 2, "2-1", 20, 1, 1, 1, 20 * mib, 0, 0, day, "10:00:00"),
                ("u0", 1, "1-1", 30, 1, 1, 1, 30 * mib, 0, 0, day, "11:00:00"),
            ],
        )
        db.insert("folder", [("u0", 4096, day, "10:00:00")])
        data = consumption_journal(db, "COMP-7", ["u0", "u1"], day)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?><journal>")
    root = check_journal(data)
    transaction = root.find("transaction")
    assert transaction is not None and transaction.get("type") == "Sale Packing List"
    assert transaction.findtext("title") == "Eco Information for COMP-7 "
    assert transaction.findtext("reference") == f"{day}-global"
    assert transaction.find("arrow").get("type") == "Destination"  # type: ignore[union-attr]
    movements = [
        (m.findtext("resource"), m.findtext("reference"), float(m.findtext("quantity") or 0))
        for m in transaction.findall("movement")
    ]
    assert movements == [
        ("service_module/cpu_load_percent", "COMP-7", 20.0),
        ("service_module/memory_used", "COMP-7", 200.0),
        ("service_module/zero_emission_ratio", "COMP-7", -1.0),
        # per user: sums per sample time, averaged over the distinct sample times
        ("service_module/cpu_load_percent", "u0", 30.0),
        ("service_module/memory_used", "u0", 30.0),
        ("service_module/disk_used", "u0", 4.0),
    ]


def test_consumption_reports_written_once(tmp_path: Path) -> None:
    reports, xml = tmp_path / "consumption-report", tmp_path / "xml_report"
    reports.mkdir()
    xml.mkdir()
    today = datetime.date(2026, 3, 20)
    with CollectorDB.open(tmp_path) as db:
        written = write_consumption_reports(db, "C", ["u0"], today, reports, xml)
        assert [p.name for p in written] == ["2026-03-19.xml", "2026-03-18.xml"]
        assert sorted(p.name for p in xml.iterdir()) == ["2026-03-18.xml", "2026-03-19.xml"]
        (reports / "2026-03-19.xml").rename(reports / "2026-03-19.xml.uploaded")
        assert write_consumption_reports(db, "C", ["u0"], today, reports, xml) == []


def test_monitor_files(tmp_path: Path) -> None:
    part = tmp_path / "slappart0"
    (part / ".slapgrid").mkdir(parents=True)
    empty = tmp_path / "slappart1"  # no .slapgrid: nothing written
    empty.mkdir()
    now = datetime.datetime(2026, 3, 20, 10, 31, 10, tzinfo=datetime.UTC)
    with CollectorDB.open(tmp_path) as db:
        db.insert(
            "user",
            [
                (
                    "u0",
                    999999,
                    "1-1",
                    12.5,
                    120,
                    2,
                    1.5,
                    2 * 1024 * 1024,
                    10,
                    5,
                    "2026-03-20",
                    "10:30:05",
                )
            ],
        )
        for _ in range(2):
            write_monitor_files(db, {"u0": part, "u1": empty}, now, 1000.0)
    monitor = part / ".slapgrid" / "monitor"
    process = json.loads((monitor / "monitor_resource_process.data.json").read_text())
    assert process["date"] == 1000.0
    assert process["data"] == [
        "date, total process, CPU percent, CPU time, CPU threads",
        "2026-03-20 10:30:00, 1, 12.5, 2.0, 2.0",
        "2026-03-20 10:30:00, 1, 12.5, 2.0, 2.0",
    ]
    status = json.loads((monitor / "monitor_resource.status.json").read_text())
    assert status["total_process"] == 1 and status["memory_rss"] == 2.0
    (per_pid,) = json.loads((monitor / "monitor_process_resource.status.json").read_text())
    assert per_pid["pid"] == 999999 and "name" not in per_pid  # that pid does not exist
    assert not (empty / ".slapgrid").exists()
