"""The collector database, `<instance_root>/var/data-log/collector.db` (upstream's schema).

Seven tables, created in this order: user, folder, computer, system, disk, temperature,
heating. Each has `date` and `time` (UTC text, `YYYY-MM-DD` and `HH:MM:SS`) and `reported`
(0 until the day has been dumped and reported). All SQL lives here and uses parameters.

A file that is not a sound SQLite database is moved aside (`collector.db.corrupt-<stamp>`)
and a new one is created: the collector keeps working and the old data stays inspectable.
"""

from __future__ import annotations

import datetime
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE_NAME = "collector.db"

#: table -> columns, in upstream's order (`reported` is added to each).
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "user": (
        ("partition", "text"),
        ("pid", "real"),
        ("process", "text"),
        ("cpu_percent", "real"),
        ("cpu_time", "real"),
        ("cpu_num_threads", "real"),
        ("memory_percent", "real"),
        ("memory_rss", "real"),
        ("io_rw_counter", "real"),
        ("io_cycles_counter", "real"),
        ("date", "text"),
        ("time", "text"),
    ),
    "folder": (("partition", "text"), ("disk_used", "real"), ("date", "text"), ("time", "text")),
    "computer": (
        ("cpu_num_core", "real"),
        ("cpu_frequency", "real"),
        ("cpu_type", "text"),
        ("memory_size", "real"),
        ("memory_type", "text"),
        ("partition_list", "text"),
        ("date", "text"),
        ("time", "text"),
    ),
    "system": (
        ("loadavg", "real"),
        ("cpu_percent", "real"),
        ("memory_used", "real"),
        ("memory_free", "real"),
        ("net_in_bytes", "real"),
        ("net_in_errors", "real"),
        ("net_in_dropped", "real"),
        ("net_out_bytes", "real"),
        ("net_out_errors", "real"),
        ("net_out_dropped", "real"),
        ("date", "text"),
        ("time", "text"),
    ),
    "disk": (
        ("partition", "text"),
        ("used", "text"),
        ("free", "text"),
        ("mountpoint", "text"),
        ("date", "text"),
        ("time", "text"),
    ),
    "temperature": (
        ("sensor_id", "name"),
        ("temperature", "real"),
        ("alarm", "integer"),
        ("date", "text"),
        ("time", "text"),
    ),
    "heating": (
        ("model_id", "name"),
        ("sensor_id", "name"),
        ("initial_temperature", "real"),
        ("final_temperature", "real"),
        ("delta_time", "real"),
        ("zero_emission_ratio", "real"),
        ("date", "text"),
        ("time", "text"),
    ),
}
#: tables whose reported rows are never garbage collected.
PRESERVED = frozenset({"heating"})


class CollectorDB:
    """One open collector database."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path

    # ---- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path, now: datetime.datetime | None = None) -> CollectorDB:
        """Open (creating it if needed) the database of `directory`; a corrupt one is moved
        aside with a warning and replaced by an empty one."""
        path = directory / DATABASE_NAME
        try:
            connection = _connect_checked(path)
        except sqlite3.DatabaseError as exc:
            stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%S")
            aside = path.with_name(f"{DATABASE_NAME}.corrupt-{stamp}")
            os.replace(path, aside)
            for suffix in ("-journal", "-wal", "-shm"):
                extra = path.with_name(DATABASE_NAME + suffix)
                if extra.exists():
                    os.replace(extra, aside.with_name(aside.name + suffix))
            log.warning(
                "collector database %s is corrupt (%s): moved aside to %s, starting a new one",
                path,
                exc,
                aside.name,
            )
            connection = _connect_checked(path)
        db = cls(connection, path)
        db.bootstrap()
        return db

    def bootstrap(self) -> None:
        cur = self.connection.cursor()
        # upstream keeps the journal in memory: a crash mid-write then corrupts the file.
        # WAL is as fast and survives crashes.
        cur.execute("pragma journal_mode=wal")
        cur.execute("pragma synchronous=normal")
        cur.execute("pragma temp_store=memory")
        # upstream asks for 100000 pages (~400 MB); a first run that dumps two weeks then
        # grew to 200 MB of RSS. 16 MiB keeps runs as fast (benchmarks/collect.py).
        cur.execute("pragma cache_size=-16384")
        for table, columns in TABLES.items():
            cols = ", ".join(f"{name} {kind}" for name, kind in columns)
            cur.execute(
                f"create table if not exists {table} ({cols}, reported integer NULL DEFAULT 0)"
            )
            if table == "user":
                cur.execute(
                    "create index if not exists user_partition_date_time "
                    "on user (partition, date, time)"
                )
        for table in self.table_list():
            cur.execute(
                f"create index if not exists {table}_date_reported_index "
                f"on {table} (date, reported)"
            )
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> CollectorDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ---------------------------------------------------------------------
    def insert(self, table: str, rows: Iterable[Sequence[Any]]) -> int:
        """Insert rows (values in TABLES order, without `reported`); returns the count."""
        names = [name for name, _ in TABLES[table]]
        sql = f"insert into {table} ({', '.join(names)}) values ({', '.join('?' for _ in names)})"
        rows = list(rows)
        self.connection.executemany(sql, rows)
        return len(rows)

    def commit(self) -> None:
        self.connection.commit()

    def mark_day_reported(self, date: str) -> None:
        for table in self.table_list():
            self.connection.execute(
                f"update {table} set reported = 1 where date = ? and reported = 0", (date,)
            )

    def garbage_collect(self, days: int, today: datetime.date) -> int:
        """Delete reported rows dated outside the last `days` days (today included)."""
        first = (today - datetime.timedelta(days=max(days, 1) - 1)).isoformat()
        last = today.isoformat()
        deleted = 0
        for table in self.table_list():
            if table in PRESERVED:
                continue
            cur = self.connection.execute(
                f"delete from {table} where reported = 1 and (date < ? or date > ?)",
                (first, last),
            )
            deleted += cur.rowcount
        self.connection.commit()
        if deleted:
            # VACUUM rebuilds the whole file in a temporary database: on disk, not in RAM
            self.connection.execute("pragma temp_store=file")
            self.connection.execute("VACUUM")
            self.connection.execute("pragma temp_store=memory")
            self.connection.execute("pragma wal_checkpoint(TRUNCATE)")
        return deleted

    # ---- reading ---------------------------------------------------------------------
    def table_list(self) -> list[str]:
        return [
            r[0]
            for r in self.connection.execute(
                "select name from sqlite_master where type='table' order by rowid"
            )
        ]

    def unreported_dates(self, ignore: str | None = None) -> list[str]:
        """Dates with unreported `system` rows (the smallest table that always has rows)."""
        rows = self.connection.execute(
            "select date from system where reported = 0 and date != ? group by date order by date",
            (ignore or "",),
        )
        return [r[0] for r in rows]

    def rows(self, table: str, date: str | None = None) -> list[tuple[Any, ...]]:
        return list(self.iter_rows(table, date))

    def iter_rows(self, table: str, date: str | None = None) -> Iterator[tuple[Any, ...]]:
        """Every row (of one date), streamed from a cursor."""
        if date is None:
            return iter(self.connection.execute(f"select * from {table}"))
        return iter(self.connection.execute(f"select * from {table} where date = ?", (date,)))

    def count(self, table: str) -> int:
        return int(self.connection.execute(f"select count(*) from {table}").fetchone()[0])

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.connection.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.connection.execute(sql, params))

    def last_folder_time(self, user: str) -> datetime.datetime | None:
        row = self.connection.execute(
            "select date, time from folder where partition = ? "
            "order by date desc, time desc limit 1",
            (user,),
        ).fetchone()
        if row is None:
            return None
        return datetime.datetime.strptime(f"{row[0]} {row[1]}", "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=datetime.UTC
        )

    def last_zero_emission_ratio(self) -> float | int:
        """The latest heating test's ratio; the integer -1 (upstream's "-1") when none."""
        value = self.scalar(
            "select zero_emission_ratio from heating order by date desc, time desc limit 1"
        )
        return -1 if value is None else float(value)


def _connect_checked(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30)
    try:
        result = connection.execute("pragma quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {result[0] if result else 'no answer'}")
    except sqlite3.DatabaseError:
        connection.close()
        raise
    return connection
