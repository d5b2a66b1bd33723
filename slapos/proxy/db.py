"""The proxy's storage backends: the `Database` interface, sqlite's own code, migrations.

`open_database(uri)` picks the backend: a path or `sqlite:///PATH` is sqlite (this
module), `postgresql://...` is PostgreSQL (`slapos.proxy.pgdb`). Both hold the tables
`slapos.proxy.store` queries; our own revisions on top of upstream's v18 layout (indexes,
tables) are numbered by `PRAGMA user_version` here, and an old upstream layout is migrated.

Callers hold one connection per serving thread (autocommit mode) and wrap each HTTP
request in a write transaction (sqlite: BEGIN IMMEDIATE; PostgreSQL: one advisory lock:
writers queue up instead of failing or reading stale rows) or a read transaction (one
snapshot); a crash mid-request rolls back in full. Every write transaction bumps the
`generation` row of config18, which caches of other processes read to stay exact.

Imports only the standard library, slapos.errors, slapos.proxy.status (SQL only) and
slapos.proxy.store.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from slapos.errors import SlapOSError
from slapos.proxy import status
from slapos.proxy.store import SCHEMA_VERSION, TABLES, Connection, Store

log = logging.getLogger(__name__)

#: our revision of the v18 layout (PRAGMA user_version).
REVISION = 3
REVISIONS = {
    1: (
        "CREATE INDEX IF NOT EXISTS partition18_instance"
        " ON partition18 (partition_reference, requested_by)",
        "CREATE INDEX IF NOT EXISTS partition18_free"
        " ON partition18 (computer_reference, slap_state)",
        "CREATE INDEX IF NOT EXISTS slave18_reference ON slave18 (reference, computer_reference)",
        "CREATE INDEX IF NOT EXISTS partition_network18_partition"
        " ON partition_network18 (computer_reference, partition_reference)",
    ),
    # what nodes report, kept (slapos.proxy.status)
    2: (status.TABLE_SQL,),
    # certificates refused from now on, by common name (slapos.proxy.identity); not an
    # upstream table, so it has no version suffix and upstream ignores it
    3: (
        "CREATE TABLE IF NOT EXISTS revoked_certificate ("
        " common_name VARCHAR(255) PRIMARY KEY, revoked_at REAL)",
    ),
}


class DatabaseError(SlapOSError):
    """The database cannot be opened, migrated or written."""


class Database:
    """One storage backend: opens connections, owns their transactions and schema."""

    #: how the database is named in messages (a PostgreSQL password masked)
    shown: str
    #: the sqlite file (backups are written next to it); None for a server
    path: str | None = None
    #: errors that mean "the database cannot answer now" (answered 503)
    unavailable: tuple[type[BaseException], ...] = ()

    def connect(self) -> Connection:
        raise NotImplementedError

    def write_transaction(self, conn: Any, *, lock: bool = True) -> AbstractContextManager[Any]:
        """`lock=False`: a write that needs no serialisation with other writers (where
        the backend can tell them apart; sqlite has one writer at a time anyway)."""
        raise NotImplementedError

    def read_transaction(self, conn: Any) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def initialize(self, conn: Any) -> None:
        raise NotImplementedError

    def table_versions(self, conn: Any) -> dict[str, str]:
        raise NotImplementedError

    def lost(self, conn: Any, exc: BaseException) -> bool:
        """Whether `exc` means the connection is gone (then a new one may succeed)."""
        return False

    def discard(self, conn: Any) -> None:
        """Forget a broken connection."""
        try:
            conn.close()
        except Exception:  # it is broken already: nothing more to release
            log.debug("closing a broken connection", exc_info=True)


class SqliteDatabase(Database):
    """A sqlite file in WAL mode (or `:memory:`)."""

    unavailable = (sqlite3.OperationalError,)

    def __init__(self, path: str) -> None:
        self.path = self.shown = path

    def connect(self) -> sqlite3.Connection:
        return connect(self.path or ":memory:")

    def write_transaction(self, conn: Any, *, lock: bool = True) -> AbstractContextManager[Any]:
        return write_transaction(conn)

    def read_transaction(self, conn: Any) -> AbstractContextManager[Any]:
        return read_transaction(conn)

    def initialize(self, conn: Any) -> None:
        initialize(conn, self.path)

    def table_versions(self, conn: Any) -> dict[str, str]:
        return table_versions(conn)


def is_postgresql(uri: str) -> bool:
    return uri.startswith(("postgresql://", "postgres://"))


def sqlite_path(uri: str) -> str:
    """`sqlite:///relative`, `sqlite:////absolute` (SQLAlchemy's spelling) or a plain path."""
    if uri.startswith("sqlite:///"):
        return uri[len("sqlite:///") :] or ":memory:"
    if uri == "sqlite://":  # sqlite://NAME is no URI of ours: a path, refused if absent
        return ":memory:"
    return uri


def open_database(uri: str | Path) -> Database:
    """The backend for `[slapproxy] database_uri` (nothing is connected yet)."""
    uri = str(uri)
    if is_postgresql(uri):
        try:
            from slapos.proxy import pgdb
        except ImportError as exc:
            raise DatabaseError(
                f"a PostgreSQL database_uri needs psycopg 3: pip install 'slapos[postgresql]'"
                f" ({exc})"
            ) from exc
        return pgdb.PostgresDatabase(uri)
    scheme, sep, _ = uri.partition("://")
    if sep and scheme != "sqlite" and scheme.replace("+", "").isalnum():
        # not a path: sqlite would make a file under a directory named "mysql:"
        raise DatabaseError(
            f"database_uri {uri!r}: unsupported scheme {scheme!r} (a sqlite path, "
            "sqlite:///PATH or postgresql://...)"
        )
    return SqliteDatabase(sqlite_path(uri))


def connect(path: str | Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """Open the database in WAL mode; autocommit, transactions are explicit."""
    try:
        conn = sqlite3.connect(
            str(path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and str(path) != ":memory:":
            log.warning("%s: journal mode is %s, not WAL", path, mode)
        # NORMAL in WAL mode: a killed process loses nothing committed; a power cut
        # may lose the last transactions, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        # one connection per serving thread: keep each page cache small (memory budget)
        conn.execute("PRAGMA cache_size = -1024")
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    return conn


class write_transaction:
    """`with write_transaction(conn):` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any
    exception. A class rather than a @contextmanager generator: it runs on every write."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        conn = self.conn
        if kind is None:
            try:
                conn.execute("COMMIT")
                return
            except BaseException:
                if conn.in_transaction:  # never hand back a connection mid-transaction
                    conn.execute("ROLLBACK")
                raise
        if conn.in_transaction:  # sqlite may have rolled back itself (SQLITE_FULL...)
            conn.execute("ROLLBACK")


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One consistent snapshot for several SELECTs."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


# ---------------------------------------------------------------------------------------
# Schema and migrations


def _schema_sql() -> str:
    # a plain file next to this module (package data); importlib.resources would pull in
    # tempfile, random and hashlib: megabytes of resident memory for one read
    return Path(__file__).with_name("schema.sql").read_text(encoding="utf-8")


def table_versions(conn: sqlite3.Connection) -> dict[str, str]:
    """{table name: version suffix} of the proxy tables present."""
    found: dict[str, str] = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        match = re.fullmatch(r"([a-z_]+?)(\d+)", name)
        if match and match.group(1) in TABLES:
            found[name] = match.group(2)
    return found


def initialize(conn: sqlite3.Connection, database_path: str | Path | None = None) -> None:
    """Create or migrate the schema; an old upstream layout is backed up first."""
    try:
        with write_transaction(conn):
            versions = table_versions(conn)
            old = {name: v for name, v in versions.items() if v != SCHEMA_VERSION}
            if old and database_path and str(database_path) != ":memory:":
                _backup(conn, Path(database_path), sorted(set(old.values())))
            for statement in _statements(_schema_sql()):
                conn.execute(statement)
            if old:
                _migrate_tables(conn, old)
            revision = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in sorted(REVISIONS):
                if number > revision:
                    for statement in REVISIONS[number]:
                        conn.execute(statement)
            if revision < REVISION:
                conn.execute(f"PRAGMA user_version = {REVISION}")
            Store(conn).ensure_generation()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot initialise the proxy database: {exc}") from exc


def _statements(script: str) -> Iterator[str]:
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()


def _backup(conn: sqlite3.Connection, path: Path, versions: list[str]) -> None:
    stamp = datetime.now().isoformat(timespec="seconds")
    backup = Path(f"{path}-backup-{'-'.join(versions)}to{SCHEMA_VERSION}-{stamp}.sql")
    log.info("old proxy schema %s: backing the database up to %s", ", ".join(versions), backup)
    with open(backup, "w", encoding="utf-8") as out:
        for line in conn.iterdump():
            if line in ("BEGIN TRANSACTION;", "COMMIT;"):
                continue
            out.write(f"{line}\n")


def _migrate_tables(conn: sqlite3.Connection, old: dict[str, str]) -> None:
    """Copy the columns both layouts share from each old table, then drop it."""
    for name, version in sorted(old.items()):
        base = name[: -len(version)]
        rows = [dict(row) for row in conn.execute(f'SELECT * FROM "{name}"')]
        if base == "local_software_release_root":
            continue
        if base == "partition" and int(version) < 17:
            _rebase_requested_by(rows)
        new_columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{base}18")')}
        for row in rows:
            data = {k: v for k, v in row.items() if k in new_columns}
            if not data:
                continue
            columns = ", ".join(f'"{k}"' for k in data)
            marks = ", ".join("?" for _ in data)
            conn.execute(
                f'INSERT OR REPLACE INTO "{base}18" ({columns}) VALUES ({marks})',
                list(data.values()),
            )
        conn.execute(f'DROP TABLE "{name}"')
        log.info("migrated %d rows of %s to %s18", len(rows), name, base)


def _rebase_requested_by(rows: list[dict[str, Any]]) -> None:
    """Before v17, requested_by named the parent partition; now it is the tree root title."""
    by_reference = {row["reference"]: row for row in rows}
    for row in rows:
        parent = row.get("requested_by")
        seen: set[str] = set()
        root = row
        while parent and parent in by_reference and parent not in seen:
            seen.add(parent)
            root = by_reference[parent]
            parent = root.get("requested_by")
        if root is not row:
            row["requested_by"] = root.get("partition_reference") or ""
