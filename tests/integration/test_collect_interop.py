"""The collector database is upstream's: slapos.core 1.26.1's collector code reads ours, and
ours opens one upstream created."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from slapos.collect.db import CollectorDB
from slapos.collect.report import consumption_journal
from tests.fixtures.upstream import Upstream


def test_upstream_reads_our_database(upstream: Upstream, tmp_path: Path) -> None:
    with CollectorDB.open(tmp_path) as db:
        db.insert("system", [(0.5, 40, 100, 100, 0, 0, 0, 0, 0, 0, "2026-03-19", "10:00:00")])
        db.insert(
            "user", [("slapuser0", 7, "7-1.0", 25, 1, 1, 1, 2**21, 0, 0, "2026-03-19", "10:00:00")]
        )
        db.commit()
        ours = consumption_journal(db, "COMP-1", ["slapuser0"], "2026-03-19")
    code = f"""
        import json
        from slapos.collect.db import Database
        from slapos.collect.reporter import ConsumptionReport
        db = Database({str(tmp_path)!r})
        db.connect()
        tables = db.getTableList()
        dates = [list(r) for r in db.getDateScopeList()]
        db.close()
        report = ConsumptionReport(database=db, computer_id="COMP-1", location={str(tmp_path)!r},
                                   user_list=["slapuser0"])
        path = report.buildXMLReport("2026-03-19")
        print(json.dumps({{"tables": tables, "dates": dates, "xml": open(path).read()}}))
    """
    done = upstream.python_code(code)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["tables"] == [
        "user", "folder", "computer", "system", "disk", "temperature", "heating",
    ]  # fmt: skip
    assert answer["dates"] == [["2026-03-19", 1]]
    # upstream's journal of our data is ours, byte for byte
    assert answer["xml"].encode() == ours


def test_we_open_a_database_upstream_created(upstream: Upstream, tmp_path: Path) -> None:
    code = f"""
        from slapos.collect.db import Database
        db = Database({str(tmp_path)!r}, create=True)
        db.connect()
        db.insertSystemSnapshot(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, "2026-03-19", "10:00:00")
        db.commit()
        db.close()
    """
    done = upstream.python_code(code)
    assert done.returncode == 0, done.stderr
    with CollectorDB.open(tmp_path) as db:
        assert db.rows("system") == [
            (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, "2026-03-19", "10:00:00", 0)
        ]
        assert db.unreported_dates() == ["2026-03-19"]
    with sqlite3.connect(tmp_path / "collector.db") as raw:
        assert raw.execute("pragma integrity_check").fetchone() == ("ok",)
