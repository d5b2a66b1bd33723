"""What nodes report, kept: the last status of each instance and software installation.

Upstream's proxy answers "Ignored" to `startedComputerPartition`, `softwareInstanceError`,
`buildingSoftwareRelease`... and forgets them; a real master keeps them, and so do we, so
that `slapos explain` and the panel can say which instance fails and why. One row per
instance (computer, partition) and per installation (computer, release URL): the last
report (status, message, time) and the last error (message, time), which survives a later
success so that "it failed at 10:02, fine since 10:05" can be told.

The table is ours (`slapos_status`, no upstream version suffix: upstream's proxy opening
the same database ignores it). Its SQL is portable, sqlite and PostgreSQL alike: `?`
parameters, explicit columns, UPDATE then INSERT instead of `INSERT OR REPLACE`, times as
ISO 8601 UTC text (sortable, readable in both).

Imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

INSTANCE, SOFTWARE = "instance", "software"
ERROR = "error"

#: Created by the proxy's schema revision 2 (slapos.proxy.db; each backend runs it).
TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS slapos_status ("
    " kind VARCHAR(16) NOT NULL,"
    " computer_reference VARCHAR(255) NOT NULL,"
    " reference TEXT NOT NULL,"
    " title TEXT NOT NULL DEFAULT '',"
    " status VARCHAR(32) NOT NULL,"
    " message TEXT NOT NULL DEFAULT '',"
    " reported_at VARCHAR(32) NOT NULL,"
    " error TEXT NOT NULL DEFAULT '',"
    " error_at VARCHAR(32) NOT NULL DEFAULT '',"
    " PRIMARY KEY (kind, computer_reference, reference))"
)
_COLUMNS = (
    "kind, computer_reference, reference, title, status, message, reported_at, error, error_at"
)


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any: ...


@dataclass(frozen=True)
class Status:
    kind: str
    computer_reference: str
    reference: str  # partition reference, or software release URL
    title: str  # instance title when reported (a reused partition's old status is not shown)
    status: str  # started | stopped | error | building | available | destroyed
    message: str
    reported_at: str
    error: str
    error_at: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


#: (whole second, its text): a node's reports come in bursts within one second
_last_iso: tuple[int, str] = (-1, "")


def iso(seconds: float) -> str:
    global _last_iso
    whole = int(seconds) if seconds >= 0 else -1
    if whole >= 0 and _last_iso[0] == whole:
        return _last_iso[1]
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if whole >= 0:
        _last_iso = (whole, text)
    return text


def record(
    conn: Connection,
    kind: str,
    computer: str,
    reference: str,
    status: str,
    *,
    now: float,
    message: str = "",
    title: str = "",
) -> None:
    """Remember a report (in a write transaction). One upsert (sqlite 3.24+ and PostgreSQL
    alike): safe beside concurrent writers, so the caller need not hold the writers' lock."""
    at = iso(now)
    error, error_at = (message, at) if status == ERROR else ("", "")
    conn.execute(
        f"INSERT INTO slapos_status ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        + _on_conflict(status),
        (kind, computer, reference, title, status, message, at, error, error_at),
    )


def _on_conflict(status: str) -> str:
    """The upsert's update: a success keeps the last error; an error replaces it."""
    kept = ", error=excluded.error, error_at=excluded.error_at" if status == ERROR else ""
    return (
        " ON CONFLICT (kind, computer_reference, reference) DO UPDATE SET title=excluded.title,"
        " status=excluded.status, message=excluded.message, reported_at=excluded.reported_at" + kept
    )


def record_instance(
    conn: Connection, computer: str, partition: str, status: str, *, now: float, message: str = ""
) -> bool:
    """Remember what a node reports of one of its partitions, in one statement that needs
    no transaction around it (atomic by itself; on PostgreSQL one round trip instead of
    BEGIN, a read, the upsert and COMMIT). The title is the partition's current instance,
    read by the same statement. False, and nothing written, when the computer has no such
    partition. (`partition18` is the proxy's partition table, slapos.proxy.store.)"""
    at = iso(now)
    error, error_at = (message, at) if status == ERROR else ("", "")
    cursor = conn.execute(
        f"INSERT INTO slapos_status ({_COLUMNS})"
        " SELECT ?, computer_reference, reference, COALESCE(partition_reference, ''),"
        " ?, ?, ?, ?, ? FROM partition18 WHERE reference=? AND computer_reference=?"
        + _on_conflict(status),
        (INSTANCE, status, message, at, error, error_at, partition, computer),
    )
    return bool(cursor.rowcount > 0)


def forget(conn: Connection, kind: str, computer: str, reference: str) -> None:
    conn.execute(
        "DELETE FROM slapos_status WHERE kind=? AND computer_reference=? AND reference=?",
        (kind, computer, reference),
    )


def _rows(conn: Connection, where: str, args: Sequence[Any]) -> list[Status]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM slapos_status WHERE {where}"
        " ORDER BY kind, computer_reference, reference",
        args,
    ).fetchall()
    return [Status(*(str(v) for v in tuple(row))) for row in rows]


def every(conn: Connection) -> list[Status]:
    """Every row, in key order (what `slapos proxy migrate` copies)."""
    return _rows(conn, "1=1", ())


def restore(conn: Connection, row: Status) -> None:
    """Write `row` as it was read (in a write transaction, into a table without it)."""
    conn.execute(
        f"INSERT INTO slapos_status ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tuple(row.to_dict().values()),
    )


def of_computer(conn: Connection, computer: str) -> list[Status]:
    return _rows(conn, "computer_reference=?", (computer,))


def of_instance(conn: Connection, computer: str, partition: str) -> Status | None:
    found = _rows(
        conn, "kind=? AND computer_reference=? AND reference=?", (INSTANCE, computer, partition)
    )
    return found[0] if found else None


def access_status_message(status: Status | None) -> str:
    """A real master's `access_status_message`: `#access ...` or `#error ...` ("" unknown)."""
    if status is None:
        return ""
    if status.status == ERROR:
        return f"#error {status.message}".rstrip()
    return f"#access Instance correctly {status.status}"


def news_entry(status: Status) -> dict[str, Any]:
    """One entry of a HATEOAS document's `news` (what `service info` reads)."""
    return {
        "text": access_status_message(status),
        "created_at": status.reported_at,
        "reference": status.reference,
        "title": status.title,
        "computer_guid": status.computer_reference,
        "state": status.status,
        "last_error": status.error,
        "last_error_at": status.error_at,
        "portal_type": "Software Instance",
    }
