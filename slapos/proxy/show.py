"""`slapos proxy show`: the proxy database as aligned tables (cli.md §7.5) or JSON.

Text output matches 1.26.1's: `Using database: <path>`, then per section a title line
(`table computer18`, `table partition18: skipping ...`, `table slave18: empty`) and a
table whose cells are centred, NULL shown as `-`; sections are separated by a line
holding one space. Unlike 1.26.1 it never creates a missing database file, and it
writes to stdout without a pager.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from slapos.errors import SlapOSError
from slapos.proxy.db import (
    Database,
    DatabaseError,
    is_postgresql,
    open_database,
    sqlite_path,
)
from slapos.proxy.store import COLUMNS, SCHEMA_VERSION
from slapos.slap.instance_xml import xml2dict
from slapos.slap.marshal import MarshalError

SECTIONS = ("computers", "software", "partitions", "slaves", "params", "network")
_SKIPPED = {
    "partitions": ("xml", "connection_xml", "slave_instance_list"),
    "slaves": ("connection_xml",),
}
_TABLES = {
    "computers": "computer",
    "software": "software",
    "partitions": "partition",
    "slaves": "slave",
}
_ELIDED = ("ssh-key", "ssh-public-key")


class ShowError(SlapOSError):
    """The database cannot be shown."""


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """prettytable's look with padding 0 and no vertical rules: centred cells."""
    cells = [["-" if value is None else str(value) for value in row] for row in rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]
    rule = "-" * (sum(widths) + len(widths) + 1)

    def line(values: Sequence[str]) -> str:
        return " " + " ".join(v.center(w) for v, w in zip(values, widths, strict=True)) + " "

    return [rule, line(columns), rule, *(line(row) for row in cells), rule]


def _open(uri: str) -> tuple[Database, Any]:
    """The database and one connection to it, checked to hold the proxy tables."""
    database = uri if is_postgresql(uri) else sqlite_path(uri)
    try:
        backend = open_database(uri)  # an unsupported URI is said as such, not as a path
        if not is_postgresql(uri) and database != ":memory:" and not Path(database).exists():
            raise ShowError(f"database {database} does not exist (check database_uri or -u)")
        if is_postgresql(uri):
            conn: Any = backend.connect()
        else:
            conn = sqlite3.connect(database, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.create_function("md5", 1, lambda s: hashlib.md5(str(s).encode()).hexdigest())
    except DatabaseError as exc:
        raise ShowError(str(exc)) from exc
    errors: tuple[type[BaseException], ...] = (*backend.unavailable, sqlite3.Error)
    try:
        versions = set(backend.table_versions(conn).values())
    except errors as exc:
        conn.close()
        raise ShowError(f"cannot read database {backend.shown}: {exc}") from exc
    if SCHEMA_VERSION not in versions:
        conn.close()
        found = ", ".join(sorted(versions)) or "none"
        raise ShowError(
            f"database {backend.shown} has no proxy tables of schema {SCHEMA_VERSION} "
            f"(found: {found}); start the proxy once on it to create or migrate them"
        )
    return backend, conn


def _query(conn: Any, section: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    base = _TABLES[section]
    table = base + SCHEMA_VERSION
    names = list(COLUMNS[base])
    columns = ", ".join(names)
    query = {
        "software": f"SELECT {columns}, md5(url) AS md5 FROM {table}",
        "partitions": f"SELECT {columns} FROM {table} WHERE slap_state<>'free'",
    }.get(section, f"SELECT {columns} FROM {table}")
    if section == "software":
        names.append("md5")
    skipped = _SKIPPED.get(section, ())
    keep = [i for i, name in enumerate(names) if name not in skipped]
    rows = [tuple(row[i] for i in keep) for row in conn.execute(query + " ORDER BY rowid")]
    return [names[i] for i in keep], rows


def _params(conn: Any) -> list[tuple[str, str, str, list[tuple[str, str | None]]]]:
    result = []
    for row in conn.execute(
        f"SELECT reference, partition_reference, software_type, connection_xml"
        f" FROM partition{SCHEMA_VERSION} ORDER BY rowid"
    ):
        if not row["connection_xml"]:
            continue
        try:
            items = list(xml2dict(row["connection_xml"]).items())
        except MarshalError:
            items = [("<unreadable>", row["connection_xml"])]
        result.append((row["reference"], row["partition_reference"], row["software_type"], items))
    return result


def _shown_value(name: str, text: str | None) -> str | None:
    if text and name in _ELIDED:
        return text[:20] + "..." + text[-20:]
    if name == "_" and text:
        try:
            pretty = json.dumps(json.loads(text), indent=2, sort_keys=True)
        except ValueError:
            return text
        return "\n".join(line.rstrip() for line in pretty.splitlines())
    return text


def _network(conn: Any) -> dict[str, list[str]]:
    addresses: dict[str, list[str]] = {}
    for row in conn.execute(
        f"SELECT n.partition_reference, n.address FROM partition_network{SCHEMA_VERSION} n"
        f" WHERE n.partition_reference NOT IN"
        f" (SELECT reference FROM partition{SCHEMA_VERSION} WHERE slap_state='free')"
        " ORDER BY n.rowid"
    ):
        addresses.setdefault(row[0], []).append(row[1])
    return {key: addresses[key] for key in sorted(addresses)}


def show(database: str, sections: Sequence[str], out: TextIO, *, fmt: str = "text") -> None:
    """Write the chosen sections (in SECTIONS order) of `database` to `out`."""
    wanted = [s for s in SECTIONS if s in sections]
    backend, conn = _open(database)
    shown = backend.shown
    try:
        if fmt == "json":
            out.write(json.dumps(_as_json(conn, shown, wanted), indent=2, sort_keys=True) + "\n")
            return
        lines = [f"Using database: {shown}"]
        for index, section in enumerate(wanted):
            lines.extend(_section_lines(conn, section))
            if index < len(wanted) - 1:
                lines.append(" ")
        out.write("\n".join(lines) + "\n")
    finally:
        conn.close()


def _section_lines(conn: Any, section: str) -> list[str]:
    if section == "params":
        lines = []
        for reference, title, software_type, items in _params(conn):
            lines.append(f"{reference}: {title} (type {software_type})")
            lines.extend(f"    {name} = {_shown_value(name, value)}" for name, value in items)
        return lines
    if section == "network":
        return [f"{key}: {', '.join(values)}" for key, values in _network(conn).items()]
    columns, rows = _query(conn, section)
    name = _TABLES[section] + SCHEMA_VERSION
    if not rows:
        return [f"table {name}: empty"]
    skipped = _SKIPPED.get(section)
    title = f"table {name}: skipping {', '.join(skipped)}" if skipped else f"table {name}"
    return [title, *render_table(columns, rows)]


def _as_json(conn: Any, database: str, sections: Sequence[str]) -> dict[str, Any]:
    document: dict[str, Any] = {"database": database}
    for section in sections:
        if section == "params":
            document["params"] = {
                reference: {"title": title, "software_type": kind, "parameters": dict(items)}
                for reference, title, kind, items in _params(conn)
            }
        elif section == "network":
            document["network"] = _network(conn)
        else:
            columns, rows = _query(conn, section)
            document[section] = [dict(zip(columns, row, strict=True)) for row in rows]
    return document
