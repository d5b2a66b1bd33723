"""The proxy's queries: `Store`, typed access to the tables on one connection.

The table layout is slapos.core's proxy schema version 18 (tables `computer18`,
`partition18`...), so an upstream sqlite database opens here and the other way round.
`Store` speaks the SQL both backends understand (`?` parameters, explicit column lists,
`ORDER BY rowid`, no `INSERT OR REPLACE`), so every rule of the master runs unchanged on
sqlite (`slapos.proxy.db`) or PostgreSQL (`slapos.proxy.pgdb`). The caller owns the
transaction. Only query parameters, never string formatting of values.

Imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

SCHEMA_VERSION = "18"
TABLES = (
    "config",
    "software",
    "computer",
    "partition",
    "slave",
    "partition_network",
    "forwarded_partition_request",
)
#: rows answered by `SELECT *` in sqlite, in schema order (PostgreSQL adds a rowid column)
COLUMNS = {
    "config": ("name", "value"),
    "software": ("url", "computer_reference", "requested_state"),
    "computer": ("reference", "address", "netmask"),
    "slave": ("reference", "computer_reference", "connection_xml", "hosted_by", "requester_id"),
    "partition_network": (
        "partition_reference", "computer_reference", "reference", "address", "netmask",
    ),
    "forwarded_partition_request": ("partition_reference", "master_url"),
}  # fmt: skip
#: config18 row counting write transactions (cache invalidation across processes)
GENERATION = "generation"
PARTITION_COLUMNS = (
    "reference", "computer_reference", "slap_state", "software_release", "xml",
    "connection_xml", "slave_instance_list", "software_type", "partition_reference",
    "requested_by", "requester_id", "requested_state", "timestamp",
)  # fmt: skip
COLUMNS["partition"] = PARTITION_COLUMNS
_SELECT = {table: ", ".join(columns) for table, columns in COLUMNS.items()}
_PARTITIONS = f"SELECT {_SELECT['partition']} FROM partition18"


class Connection(Protocol):
    """What `Store` needs of a connection: sqlite3.Connection, or pgdb's adapter."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    def close(self) -> None: ...


class Store:
    """Typed access to the tables, on one connection (the caller owns the transaction).

    Rows read like sqlite3.Row (by name or index, `dict(row)`) on both backends.
    """

    def __init__(
        self,
        conn: Connection,
        address_cache: dict[tuple[str, str], tuple[tuple[str, str], ...]] | None = None,
    ) -> None:
        self.conn = conn
        #: (partition, computer) -> its addresses, kept by the caller between
        #: transactions; only format_computer writes partition_network18, and it empties it
        self.address_cache = address_cache
        #: set when a write found nothing to change (the caller need not bump the
        #: generation: every cached answer stays right)
        self.unchanged = False

    def _one(self, query: str, args: Sequence[Any] = ()) -> Any:
        return self.conn.execute(query, args).fetchone()

    def _all(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        return list(self.conn.execute(query, args).fetchall())

    # ---- config -----------------------------------------------------------------------
    def get_config(self, name: str) -> str | None:
        row = self._one("SELECT value FROM config18 WHERE name=?", (name,))
        return None if row is None else row[0]

    def set_config(self, name: str, value: str) -> None:
        self.conn.execute("DELETE FROM config18 WHERE name=?", (name,))
        self.conn.execute("INSERT INTO config18 (name, value) VALUES (?, ?)", (name, value))

    def ensure_generation(self) -> None:
        self.conn.execute(
            "INSERT INTO config18 (name, value) VALUES (?, '0') ON CONFLICT DO NOTHING",
            (GENERATION,),
        )

    def generation(self) -> int:
        """How many write transactions were committed (read it inside the transaction)."""
        value = self.get_config(GENERATION)
        return int(value) if value and value.isdigit() else 0

    def bump_generation(self) -> None:
        self.conn.execute(
            "UPDATE config18 SET value=CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE name=?",
            (GENERATION,),
        )

    def delete_config(self, name: str) -> None:
        self.conn.execute("DELETE FROM config18 WHERE name=?", (name,))

    # ---- revoked certificates ---------------------------------------------------------
    def revoke_certificate(self, common_name: str, when: float) -> bool:
        """Refuse certificates named `common_name` from now on; False if already done."""
        if self.is_revoked(common_name):
            return False
        self.conn.execute(
            "INSERT INTO revoked_certificate (common_name, revoked_at) VALUES (?, ?)",
            (common_name, when),
        )
        return True

    def is_revoked(self, common_name: str) -> bool:
        row = self._one("SELECT 1 FROM revoked_certificate WHERE common_name=?", (common_name,))
        return row is not None

    def revoked_certificates(self) -> list[tuple[str, float]]:
        rows = self.conn.execute(
            "SELECT common_name, revoked_at FROM revoked_certificate ORDER BY revoked_at"
        ).fetchall()
        return [(str(row[0]), float(row[1] or 0)) for row in rows]

    # ---- computers --------------------------------------------------------------------
    def computer(self, reference: str) -> Any:
        return self._one(
            f"SELECT {_SELECT['computer']} FROM computer18 WHERE reference=?", (reference,)
        )

    def computers(self, reference: str | None = None) -> list[Any]:
        if reference is None:
            return self._all(f"SELECT {_SELECT['computer']} FROM computer18 ORDER BY rowid")
        return self._all(
            f"SELECT {_SELECT['computer']} FROM computer18 WHERE reference=?", (reference,)
        )

    def add_computer(self, reference: str) -> None:
        self.conn.execute(
            "INSERT INTO computer18 (reference) VALUES (?) ON CONFLICT DO NOTHING", (reference,)
        )

    def format_computer(
        self,
        reference: str,
        address: str | None,
        netmask: str | None,
        partitions: Sequence[tuple[str, Sequence[tuple[str, str, str | None]]]],
    ) -> None:
        """Upsert the computer, drop unlisted partitions, reset addresses (§5.4).

        A node posts its configuration again every hour, nearly always the same: then
        nothing is written (`unchanged` is set)."""
        if self._formatted_as(reference, address, netmask, partitions):
            self.unchanged = True
            return
        if self.address_cache is not None:
            self.address_cache.clear()
        # delete then insert, as sqlite's INSERT OR REPLACE: the row moves to the end
        self.conn.execute("DELETE FROM computer18 WHERE reference=?", (reference,))
        self.conn.execute(
            "INSERT INTO computer18 (reference, address, netmask) VALUES (?, ?, ?)",
            (reference, address, netmask),
        )
        listed = [partition_id for partition_id, _ in partitions]
        gone = [
            row[0]
            for row in self._all(
                "SELECT reference FROM partition18 WHERE computer_reference=?", (reference,)
            )
            if row[0] not in set(listed)
        ]
        for partition_id in gone:
            self.conn.execute(
                "DELETE FROM partition18 WHERE computer_reference=? AND reference=?",
                (reference, partition_id),
            )
            self.conn.execute(
                "DELETE FROM slave18 WHERE computer_reference=? AND hosted_by=?",
                (reference, partition_id),
            )
        self.conn.execute(
            "DELETE FROM partition_network18 WHERE computer_reference=?", (reference,)
        )
        for partition_id, addresses in partitions:
            self.conn.execute(
                "INSERT INTO partition18 (reference, computer_reference) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                (partition_id, reference),
            )
            self.conn.executemany(
                "INSERT INTO partition_network18"
                " (reference, partition_reference, computer_reference, address, netmask)"
                " VALUES (?, ?, ?, ?, ?)",
                [(iface, partition_id, reference, addr, mask) for iface, addr, mask in addresses],
            )

    def _formatted_as(
        self,
        reference: str,
        address: str | None,
        netmask: str | None,
        partitions: Sequence[tuple[str, Sequence[tuple[str, str, str | None]]]],
    ) -> bool:
        row = self.computer(reference)
        if row is None or (row["address"], row["netmask"]) != (address, netmask):
            return False
        existing = self._all(
            "SELECT reference FROM partition18 WHERE computer_reference=?", (reference,)
        )
        if sorted(r[0] for r in existing) != sorted(p for p, _ in partitions):
            return False
        stored: dict[str, list[tuple[Any, ...]]] = {}
        for r in self._all(
            "SELECT partition_reference, reference, address, netmask FROM partition_network18"
            " WHERE computer_reference=? ORDER BY rowid",
            (reference,),
        ):
            stored.setdefault(r[0], []).append((r[1], r[2], r[3]))
        wanted = {p: [tuple(a) for a in addresses] for p, addresses in partitions if addresses}
        return stored == wanted

    # ---- software releases ------------------------------------------------------------
    def software_list(self, computer: str) -> list[Any]:
        return self._all(
            f"SELECT {_SELECT['software']} FROM software18 WHERE computer_reference=?"
            " ORDER BY rowid",
            (computer,),
        )

    def supply(self, computer: str, url: str, state: str) -> None:
        # delete then insert, as upstream's INSERT OR REPLACE: a re-supplied release
        # moves to the end of the list
        self.remove_software(computer, url)
        self.conn.execute(
            "INSERT INTO software18 (url, computer_reference, requested_state) VALUES (?, ?, ?)",
            (url, computer, state),
        )

    def remove_software(self, computer: str, url: str) -> None:
        self.conn.execute(
            "DELETE FROM software18 WHERE url=? AND computer_reference=?", (url, computer)
        )

    # ---- partitions -------------------------------------------------------------------
    def partition(self, reference: str, computer: str) -> Any:
        return self._one(
            f"{_PARTITIONS} WHERE reference=? AND computer_reference=?",
            (reference, computer),
        )

    def partitions(self, computer: str | None = None, *, busy_only: bool = False) -> list[Any]:
        query, args = f"{_PARTITIONS} WHERE 1=1", []
        if computer is not None:
            query += " AND computer_reference=?"
            args.append(computer)
        if busy_only:
            query += " AND slap_state!='free'"
        return self._all(query + " ORDER BY rowid", args)

    def instance(self, title: str, requested_by: str) -> Any:
        """The partition holding instance (title, tree root title), on any computer."""
        return self._one(
            f"{_PARTITIONS} WHERE partition_reference=? AND requested_by=?"
            " AND slap_state!='free' ORDER BY rowid",
            (title, requested_by),
        )

    def busy_references(self, reference: str) -> list[Any]:
        """The busy partitions named `reference`, on every computer."""
        return self._all(
            f"{_PARTITIONS} WHERE reference=? AND slap_state!='free' ORDER BY rowid", (reference,)
        )

    def instances_titled(self, title: str) -> list[Any]:
        return self._all(
            f"{_PARTITIONS} WHERE partition_reference=? AND slap_state!='free' ORDER BY rowid",
            (title,),
        )

    def root_partitions(self, title: str | None = None) -> list[Any]:
        query = f"{_PARTITIONS} WHERE slap_state!='free' AND requested_by=''"
        if title is None:
            return self._all(query + " ORDER BY rowid")
        return self._all(query + " AND partition_reference=? ORDER BY rowid", (title,))

    def tree_partitions(self, root_title: str) -> list[Any]:
        return self._all(
            f"{_PARTITIONS} WHERE slap_state!='free'"
            " AND ((partition_reference=? AND requested_by='') OR requested_by=?) ORDER BY rowid",
            (root_title, root_title),
        )

    def children_titles(self, root_title: str) -> list[str]:
        # sorted here: code point order on both backends (PostgreSQL collations differ)
        return sorted(
            row[0]
            for row in self._all(
                "SELECT partition_reference FROM partition18 WHERE requested_by=?"
                " AND slap_state!='free'",
                (root_title,),
            )
        )

    def free_partition(self, computer: str) -> Any:
        return self._one(
            f"{_PARTITIONS} WHERE slap_state='free' AND computer_reference=?"
            " ORDER BY rowid LIMIT 1",
            (computer,),
        )

    def host_candidates(
        self, computer: str, software_release: str, software_type: str, reference: str | None
    ) -> Any:
        query = (
            f"{_PARTITIONS} WHERE slap_state!='free' AND software_release=?"
            " AND computer_reference=?"
        )
        args: list[Any] = [software_release, computer]
        if software_type:
            query += " AND software_type=?"
            args.append(software_type)
        if reference is not None:
            query += " AND reference=?"
            args.append(reference)
        return self._one(query + " ORDER BY rowid LIMIT 1", args)

    def update_partition(self, reference: str, computer: str, **values: Any) -> None:
        if not values:
            return
        for column in values:
            if column not in PARTITION_COLUMNS:
                raise ValueError(f"unknown partition column {column}")
        assignments = ", ".join(f"{column}=?" for column in values)
        self.conn.execute(
            f"UPDATE partition18 SET {assignments} WHERE reference=? AND computer_reference=?",
            [*values.values(), reference, computer],
        )

    def touch(self, reference: str, computer: str, timestamp: float) -> None:
        self.conn.execute(
            "UPDATE partition18 SET timestamp=? WHERE reference=? AND computer_reference=?",
            (timestamp, reference, computer),
        )

    def touch_tree(self, root_title: str, timestamp: float) -> None:
        self.conn.execute(
            "UPDATE partition18 SET timestamp=? WHERE slap_state!='free'"
            " AND ((partition_reference=? AND requested_by='') OR requested_by=?)",
            (timestamp, root_title, root_title),
        )

    def destroy_children(self, root_title: str) -> None:
        self.conn.execute(
            "UPDATE partition18 SET requested_state='destroyed' WHERE requested_by=?"
            " AND slap_state!='free'",
            (root_title,),
        )

    def free(self, reference: str, computer: str) -> None:
        """Reset a partition to free; its timestamp survives (upstream behaviour)."""
        self.conn.execute(
            "UPDATE partition18 SET slap_state='free', software_release=NULL, xml=NULL,"
            " connection_xml=NULL, slave_instance_list=NULL, software_type=NULL,"
            " partition_reference=NULL, requested_by='', requester_id='',"
            " requested_state='started' WHERE reference=? AND computer_reference=?",
            (reference, computer),
        )
        self.conn.execute(
            "DELETE FROM slave18 WHERE hosted_by=? AND computer_reference=?", (reference, computer)
        )

    def rename(self, reference: str, computer: str, new_title: str) -> None:
        self.conn.execute(
            "UPDATE partition18 SET partition_reference=?"
            " WHERE reference=? AND computer_reference=?",
            (new_title, reference, computer),
        )

    def repoint_tree(self, old_root: str, new_root: str) -> None:
        self.conn.execute(
            "UPDATE partition18 SET requested_by=? WHERE requested_by=?", (new_root, old_root)
        )

    # ---- network ----------------------------------------------------------------------
    def addresses(self, reference: str, computer: str) -> list[tuple[str, str]]:
        cache = self.address_cache
        if cache is not None:
            known = cache.get((reference, computer))
            if known is not None:
                return list(known)
        found = [
            (row[0], row[1])
            for row in self._all(
                "SELECT reference, address FROM partition_network18"
                " WHERE partition_reference=? AND computer_reference=? ORDER BY rowid",
                (reference, computer),
            )
        ]
        if cache is not None:
            if len(cache) >= 100_000:
                cache.clear()
            cache[(reference, computer)] = tuple(found)
        return found

    def addresses_by_partition(self, computer: str) -> dict[str, list[tuple[str, str]]]:
        result: dict[str, list[tuple[str, str]]] = {}
        for row in self._all(
            "SELECT partition_reference, reference, address FROM partition_network18"
            " WHERE computer_reference=? ORDER BY rowid",
            (computer,),
        ):
            result.setdefault(row[0], []).append((row[1], row[2]))
        return result

    def network(self) -> list[Any]:
        return self._all(
            "SELECT n.partition_reference, n.computer_reference, n.reference, n.address,"
            " n.netmask FROM partition_network18 n JOIN partition18 p"
            " ON p.reference=n.partition_reference AND p.computer_reference=n.computer_reference"
            " WHERE p.slap_state!='free' ORDER BY n.partition_reference, n.rowid"
        )

    # ---- shared instances -------------------------------------------------------------
    def shared(self, reference: str, computer: str | None = None) -> Any:
        if computer is None:
            return self._one(
                f"SELECT {_SELECT['slave']} FROM slave18 WHERE reference=? ORDER BY rowid",
                (reference,),
            )
        return self._one(
            f"SELECT {_SELECT['slave']} FROM slave18 WHERE reference=? AND computer_reference=?",
            (reference, computer),
        )

    def shared_list(self) -> list[Any]:
        return self._all(f"SELECT {_SELECT['slave']} FROM slave18 ORDER BY rowid")

    def add_shared(self, reference: str, computer: str, hosted_by: str, requester_id: str) -> None:
        self.conn.execute(
            "INSERT INTO slave18 (reference, computer_reference, hosted_by, requester_id)"
            " VALUES (?, ?, ?, ?)",
            (reference, computer, hosted_by, requester_id),
        )

    def update_shared(self, reference: str, computer: str, **values: Any) -> None:
        allowed = {"connection_xml", "hosted_by", "requester_id"}
        if not values or not set(values) <= allowed:
            raise ValueError(f"bad shared instance columns {sorted(values)}")
        assignments = ", ".join(f"{column}=?" for column in values)
        self.conn.execute(
            f"UPDATE slave18 SET {assignments} WHERE reference=? AND computer_reference=?",
            [*values.values(), reference, computer],
        )

    def remove_shared(self, reference: str, computer: str) -> None:
        self.conn.execute(
            "DELETE FROM slave18 WHERE reference=? AND computer_reference=?", (reference, computer)
        )

    # ---- forwarded requests -----------------------------------------------------------
    def remember_forward(self, title: str, master_url: str, *, forget: bool = False) -> None:
        if forget:
            self.conn.execute(
                "DELETE FROM forwarded_partition_request18 WHERE partition_reference=?"
                " AND master_url=?",
                (title, master_url),
            )
        else:
            self.remember_forward(title, master_url, forget=True)
            self.conn.execute(
                "INSERT INTO forwarded_partition_request18"
                " (partition_reference, master_url) VALUES (?, ?)",
                (title, master_url),
            )

    # ---- local software release root ----------------------------------------------------
    def rebase_local_urls(self, convert: Callable[[str | None], str | None]) -> None:
        """Rewrite every stored software release URL `u` as `convert(u)` (when it differs)."""
        for table, column in (("software18", "url"), ("partition18", "software_release")):
            rows = self._all(f"SELECT rowid, {column} FROM {table}")
            for rowid, url in rows:
                new = convert(url)
                if new != url:
                    self.conn.execute(
                        f"UPDATE {table} SET {column}=? WHERE rowid=?",
                        (new, rowid),
                    )

    # ---- show -------------------------------------------------------------------------
    def table_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if table not in TABLES:
            raise ValueError(f"unknown table {table}")
        query = f"SELECT {_SELECT[table]} FROM {table}{SCHEMA_VERSION}"
        if table == "config":  # no rowid in sqlite (WITHOUT ROWID): by name, in code point order
            return list(COLUMNS[table]), sorted(tuple(row) for row in self._all(query))
        rows = self._all(query + " ORDER BY rowid")
        return list(COLUMNS[table]), [tuple(row) for row in rows]
