"""`slapos proxy migrate`: copy a proxy database into another one, checked.

Typically a sqlite master moving to PostgreSQL. The source is brought to the current
layout first (as `proxy start` would), then read in one snapshot; the target must hold no
proxy data. Every table is copied in its insertion order in one target transaction which,
before it commits, is checked: the same number of rows in every table, the same rows, and
every computer and partition reads the same (the documents a node and a client are
answered). A mismatch rolls the whole copy back. Stop the proxy first: writes made after
the snapshot would not be copied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from slapos.errors import SlapOSError
from slapos.proxy import status as node_status
from slapos.proxy.db import Database, open_database
from slapos.proxy.model import NotFound
from slapos.proxy.service import Master
from slapos.proxy.store import COLUMNS, GENERATION, TABLES, Store
from slapos.slap.marshal import dumps
from slapos.wording import counted

log = logging.getLogger(__name__)


class MigrateError(SlapOSError):
    """The copy was refused or did not check out (nothing was committed)."""


@dataclass
class MigrateReport:
    source: str
    target: str
    #: table name in the database -> rows copied
    counts: dict[str, int] = field(default_factory=dict)
    #: computers and partitions whose documents were compared
    computers: int = 0
    partitions: int = 0


def _tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in insertion order (config without our counter)."""
    result = {}
    for table in TABLES:
        _, rows = store.table_rows(table)
        if table == "config":
            rows = [row for row in rows if row[0] != GENERATION]
        result[table] = rows
    return result


def _documents(store: Store) -> dict[str, str]:
    """What every computer and partition reads, marshalled as answered on the wire."""
    documents: dict[str, str] = {}
    computers = [row["reference"] for row in store.computers()]
    for row in store.partitions():
        if row["computer_reference"] not in computers:
            computers.append(row["computer_reference"])
    for computer_id in computers:
        master = Master(store, computer_id, lambda: 0.0)
        documents[f"computer {computer_id}"] = dumps(master.computer_document(computer_id))
        for row in store.partitions(computer_id):
            key = f"partition {computer_id}/{row['reference']}"
            try:
                documents[key] = dumps(master.partition_document(row["reference"], computer_id))
            except NotFound:  # pragma: no cover - listed above, so it exists
                documents[key] = "missing"
    return documents


def migrate(source_uri: str, target_uri: str) -> MigrateReport:
    """Copy `source_uri` into the empty `target_uri`; MigrateError says why not."""
    source, target = open_database(source_uri), open_database(target_uri)
    if source.path is not None and target.path is not None and source.path == target.path:
        raise MigrateError("the source and the target are the same database")
    if source.path not in (None, ":memory:"):
        from pathlib import Path

        if not Path(str(source.path)).exists():
            raise MigrateError(f"database {source.shown} does not exist (check database_uri)")
    report = MigrateReport(source.shown, target.shown)
    source_conn = source.connect()
    try:
        source.initialize(source_conn)
        with source.read_transaction(source_conn):
            store = Store(source_conn)
            before = _tables(store)
            documents = _documents(store)
            revoked = store.revoked_certificates()
            statuses = node_status.every(source_conn)
        target_conn = target.connect()
        try:
            target.initialize(target_conn)
            _copy(target, target_conn, before, documents, report, revoked, statuses)
        finally:
            target_conn.close()
    finally:
        source_conn.close()
    return report


def _refuse_filled(target: Database, conn: Any, store: Store) -> None:
    """MigrateError when the target holds proxy data already."""
    present = {f"{table}18": len(rows) for table, rows in _tables(store).items() if rows}
    reports = len(node_status.every(conn))
    if reports:
        present["slapos_status"] = reports
    if present:
        listed = ", ".join(f"{table}: {counted(count, 'row')}" for table, count in present.items())
        raise MigrateError(
            f"the target {target.shown} already holds proxy data ({listed}); "
            "migrate into an empty database"
        )


def _copy(
    target: Database,
    conn: Any,
    before: dict[str, list[tuple[Any, ...]]],
    documents: dict[str, str],
    report: MigrateReport,
    revoked: list[tuple[str, float]],
    statuses: list[node_status.Status],
) -> None:
    with target.write_transaction(conn):
        store = Store(conn)
        _refuse_filled(target, conn, store)
        for table, rows in before.items():
            if not rows:
                continue
            columns = COLUMNS[table]
            conn.executemany(
                f"INSERT INTO {table}18 ({', '.join(columns)})"
                f" VALUES ({', '.join('?' for _ in columns)})",
                rows,
            )
            report.counts[f"{table}18"] = len(rows)
        for common_name, when in revoked:
            store.revoke_certificate(common_name, when)
        if store.revoked_certificates() != revoked:
            raise MigrateError("revoked certificates differ after the copy; nothing was committed")
        for row in statuses:
            node_status.restore(conn, row)
        if node_status.every(conn) != statuses:
            raise MigrateError("node reports differ after the copy; nothing was committed")
        if statuses:
            report.counts["slapos_status"] = len(statuses)
        after = _tables(store)
        for table in TABLES:
            if len(after[table]) != len(before[table]):
                raise MigrateError(
                    f"{table}18: {len(before[table])} rows read, {len(after[table])} written; "
                    "nothing was committed"
                )
            if after[table] != before[table]:
                raise MigrateError(f"{table}18: rows differ after the copy; nothing was committed")
        copied = _documents(store)
        for key, document in documents.items():
            if copied.get(key) != document:
                raise MigrateError(f"{key} reads differently after the copy; nothing was committed")
        if set(copied) != set(documents):
            extra = sorted(set(copied) - set(documents))
            raise MigrateError(f"unexpected after the copy: {extra}; nothing was committed")
        report.computers = sum(1 for key in documents if key.startswith("computer "))
        report.partitions = len(documents) - report.computers
        store.bump_generation()
