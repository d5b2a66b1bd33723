from __future__ import annotations

import datetime
import logging
import sqlite3
from pathlib import Path

from slapos.collect.db import TABLES, CollectorDB

DAY = datetime.date(2026, 3, 20)


def system_row(date: str, cpu: float = 10.0) -> tuple[object, ...]:
    return (0.5, cpu, 100, 200, 1000, 0, 0, 2000, 0, 0, date, "10:00:00")


def test_bootstrap_schema(tmp_path: Path) -> None:
    with CollectorDB.open(tmp_path) as db:
        assert db.table_list() == [
            "user", "folder", "computer", "system", "disk", "temperature", "heating",
        ]  # fmt: skip
        for table, columns in TABLES.items():
            info = db.query(f"pragma table_info({table})")
            assert [c[1] for c in info] == [name for name, _ in columns] + ["reported"]
        indexes = {r[0] for r in db.query("select name from sqlite_master where type='index'")}
        assert "user_partition_date_time" in indexes
        assert {f"{t}_date_reported_index" for t in TABLES} <= indexes
    assert (tmp_path / "collector.db").exists()


def test_reopen_keeps_rows(tmp_path: Path) -> None:
    with CollectorDB.open(tmp_path) as db:
        db.insert("system", [system_row("2026-03-19")])
        db.commit()
    with CollectorDB.open(tmp_path) as db:
        assert db.count("system") == 1


def test_unreported_dates_and_marking(tmp_path: Path) -> None:
    with CollectorDB.open(tmp_path) as db:
        db.insert("system", [system_row(d) for d in ("2026-03-18", "2026-03-19", "2026-03-20")])
        db.insert("user", [("u0", 1, "1-1", 1, 1, 1, 1, 1, 1, 1, "2026-03-19", "10:00:00")])
        assert db.unreported_dates(ignore="2026-03-20") == ["2026-03-18", "2026-03-19"]
        db.mark_day_reported("2026-03-19")
        assert db.unreported_dates(ignore="2026-03-20") == ["2026-03-18"]
        assert db.query("select reported from user") == [(1,)]


def test_garbage_collect_window(tmp_path: Path) -> None:
    with CollectorDB.open(tmp_path) as db:
        for back, reported in ((0, 1), (2, 1), (3, 1), (11, 0), (10, 1)):
            day = (DAY - datetime.timedelta(days=back)).isoformat()
            db.insert("system", [system_row(day)])
            db.insert("heating", [("m", "s", 1, 2, 3, 0.5, day, "10:00:00")])
            db.connection.execute("update system set reported = ? where date = ?", (reported, day))
            db.connection.execute("update heating set reported = 1 where date = ?", (day,))
        db.commit()
        deleted = db.garbage_collect(3, DAY)
        left = sorted(r[0] for r in db.query("select date from system"))
        # kept: the 3 days ending today (today included), and unreported rows
        assert left == ["2026-03-09", "2026-03-18", "2026-03-20"]
        assert deleted == 2
        assert db.count("heating") == 5  # never collected


def test_corrupt_database_moved_aside(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "collector.db").write_bytes(b"garbage" * 1000)
    caplog.set_level(logging.WARNING)
    now = datetime.datetime(2026, 3, 20, 10, 0, tzinfo=datetime.UTC)
    with CollectorDB.open(tmp_path, now) as db:
        assert db.count("user") == 0
    aside = tmp_path / "collector.db.corrupt-20260320T100000"
    assert aside.read_bytes() == b"garbage" * 1000
    assert "is corrupt" in caplog.text and "collector.db.corrupt-20260320T100000" in caplog.text


def test_damaged_database_moved_aside(tmp_path: Path) -> None:
    """A real SQLite file with a damaged page: the integrity check catches it."""
    with CollectorDB.open(tmp_path) as db:
        db.insert("system", [system_row("2026-03-19", cpu=float(i)) for i in range(2000)])
        db.commit()
    data = bytearray((tmp_path / "collector.db").read_bytes())
    for offset in range(4096 * 3, min(len(data), 4096 * 6)):
        data[offset] = 0xFF
    (tmp_path / "collector.db").write_bytes(bytes(data))
    with CollectorDB.open(tmp_path) as db:
        assert db.count("system") == 0
    assert any(p.name.startswith("collector.db.corrupt-") for p in tmp_path.iterdir())
    sqlite3.connect(tmp_path / "collector.db").execute("select 1").fetchone()


def test_folder_time_and_zero_emission(tmp_path: Path) -> None:
    with CollectorDB.open(tmp_path) as db:
        assert db.last_folder_time("u0") is None
        assert db.last_zero_emission_ratio() == -1.0
        db.insert(
            "folder",
            [("u0", 2048, "2026-03-19", "10:00:00"), ("u0", 2048, "2026-03-20", "09:00:00")],
        )
        db.insert("heating", [("m", "s", 1, 2, 3, 0.25, "2026-03-20", "10:00:00")])
        assert db.last_folder_time("u0") == datetime.datetime(
            2026, 3, 20, 9, 0, tzinfo=datetime.UTC
        )
        assert db.last_zero_emission_ratio() == 0.25
