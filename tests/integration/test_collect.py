"""`slapos node collect` against real processes of real partition users, and the usage
reports `node report` sends from what it wrote (node.md §12, §9.1).

Needs root: the test creates two throwaway users, runs processes as them, and removes the
users afterwards.
"""

from __future__ import annotations

import datetime
import os
import secrets
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.common import REPO

pytestmark = pytest.mark.root

BURN = "import time\nend = time.time() + 60\nwhile time.time() < end: sum(range(10000))\n"
IDLE = "import time\ntime.sleep(60)\n"


@dataclass
class Node:
    config: Path
    instance_root: Path
    users: list[str]
    pids: dict[str, int]


def _useradd(name: str) -> None:
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    base = "sct" + secrets.token_hex(3)
    users = [f"{base}0", f"{base}1"]
    created: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in users:
            _useradd(name)
            created.append(name)
        instance_root = tmp_path / "srv"
        for n, name in enumerate(users):
            part = instance_root / f"slappart{n}"
            part.mkdir(parents=True)
            import pwd

            entry = pwd.getpwnam(name)
            os.chown(part, entry.pw_uid, entry.pw_gid)
        # 2 MiB of real data in slappart0, so its disk use is above the 1 MiB floor
        (instance_root / "slappart0" / "data.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        pids = {}
        for name, code in zip(users, (BURN, IDLE), strict=True):
            proc = subprocess.Popen(
                [sys.executable, "-c", code], user=name, cwd="/", stdin=subprocess.DEVNULL
            )
            procs.append(proc)
            pids[name] = proc.pid
            if code is BURN:
                # a core of its own whatever else runs (a parallel test run, other work on
                # the machine): the test measures the collector, not the machine's load
                os.setpriority(os.PRIO_PROCESS, proc.pid, -10)
        config = tmp_path / "slapos.cfg"
        config.write_text(
            textwrap.dedent(
                f"""\
                [slapos]
                computer_id = COMP-COLLECT
                master_url = http://127.0.0.1:1
                software_root = {tmp_path}/opt
                instance_root = {instance_root}
                collect_cache = 15

                [slapformat]
                partition_amount = 2
                user_base_name = {base}
                partition_base_name = slappart

                [collect]
                measure_interval = 1
                """
            )
        )
        yield Node(config, instance_root, users, pids)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for name in created:
            subprocess.run(["userdel", name], check=False, capture_output=True)


def run_collect(node: Node) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slapos", "node", "collect", "--cfg", str(node.config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
    )


def test_collect_stores_partition_users_processes(node: Node) -> None:
    done = run_collect(node)
    assert done.returncode == 0, done.stderr
    db_path = node.instance_root / "var" / "data-log" / "collector.db"
    assert (node.instance_root / "var" / "data-log").stat().st_mode & 0o777 == 0o755
    with sqlite3.connect(db_path) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        assert tables == ["user", "folder", "computer", "system", "disk", "temperature", "heating"]
        rows = {
            r[0]: r
            for r in db.execute(
                "select partition, pid, process, cpu_percent, cpu_time, cpu_num_threads, "
                "memory_percent, memory_rss, io_rw_counter, io_cycles_counter from user"
            )
        }
        burner, idler = node.users
        assert set(rows) == {burner, idler}
        assert rows[burner][1] == node.pids[burner]
        assert rows[burner][2].startswith(f"{node.pids[burner]}-")
        assert rows[burner][3] > 20  # it burns CPU for the whole measure window
        assert rows[idler][3] < 20
        assert rows[burner][7] > 1_000_000 and rows[idler][7] > 1_000_000  # RSS bytes
        assert rows[burner][5] >= 1
        folders = dict(db.execute("select partition, disk_used from folder"))
        assert set(folders) == {burner}  # slappart1 is empty: under the 1 MiB floor
        assert folders[burner] >= 2048
        ((_loadavg, cpu, used, free),) = db.execute(
            "select loadavg, cpu_percent, memory_used, memory_free from system"
        )
        assert 0 <= cpu <= 100 and used > 0 and free > 0
        cores, size, parts = db.execute(
            "select cpu_num_core, memory_size, partition_list from computer"
        ).fetchone()
        assert cores == os.cpu_count() and size > 0 and "=" in parts
        assert db.execute("select count(*) from disk").fetchone()[0] >= 1
    series = node.instance_root / "var" / "data-log" / "system_cpu_percent.csv"
    assert series.read_text().splitlines()[0] == "time,entry"


def test_retention_dumps_reports_and_drops_old_rows(node: Node) -> None:
    data_log = node.instance_root / "var" / "data-log"
    data_log.mkdir(parents=True)
    today = datetime.datetime.now(datetime.UTC).date()
    old = (today - datetime.timedelta(days=30)).isoformat()
    unreported_old = (today - datetime.timedelta(days=20)).isoformat()
    yesterday = (today - datetime.timedelta(days=1)).isoformat()
    burner = node.users[0]
    # a first run creates the database
    assert run_collect(node).returncode == 0
    with sqlite3.connect(data_log / "collector.db") as db:
        for day, flag in ((old, 1), (unreported_old, 0), (yesterday, 0)):
            db.execute(
                "insert into system values (1, 50, 100, 100, 0, 0, 0, 0, 0, 0, ?, '10:00:00', ?)",
                (day, flag),
            )
            db.execute(
                "insert into user values (?, 1, '1-1', 30, 1, 1, 1, ?, 0, 0, ?, '10:00:00', ?)",
                (burner, 64 * 1024 * 1024, day, flag),
            )
    (node.instance_root / "var" / "consumption-report").mkdir(parents=True, exist_ok=True)
    for leftover in (node.instance_root / "var" / "consumption-report").iterdir():
        leftover.unlink()
    for leftover in (node.instance_root / "var" / "xml_report" / "COMP-COLLECT").iterdir():
        leftover.unlink()

    done = run_collect(node)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(data_log / "collector.db") as db:
        dates = {r[0] for r in db.execute("select distinct date from user")}
        reported = dict(db.execute("select date, max(reported) from system group by date"))
    assert old not in dates and unreported_old not in dates  # dumped, reported, dropped
    assert yesterday in dates and reported[yesterday] == 1  # reported, inside the window
    assert reported[today.isoformat()] == 0
    # the dumps of those days were archived
    for day in (unreported_old, yesterday):
        with tarfile.open(data_log / f"{day}.tar.gz") as tar:
            assert f"{day}/dump_user.csv" in tar.getnames()
        assert not (data_log / day).exists()
    # yesterday's consumption journal, ready for node report
    journal = node.instance_root / "var" / "xml_report" / "COMP-COLLECT" / f"{yesterday}.xml"
    root = ET.fromstring(journal.read_bytes())
    movements = {
        (m.findtext("resource"), m.findtext("reference")): float(m.findtext("quantity") or "nan")
        for m in root.iter("movement")
    }
    assert movements[("service_module/cpu_load_percent", burner)] == 30.0
    assert movements[("service_module/memory_used", burner)] == 64.0  # MiB
    assert movements[("service_module/cpu_load_percent", "COMP-COLLECT")] == 50.0
    assert movements[("service_module/zero_emission_ratio", "COMP-COLLECT")] == -1.0


def test_corrupt_database_is_moved_aside(node: Node) -> None:
    data_log = node.instance_root / "var" / "data-log"
    data_log.mkdir(parents=True)
    (data_log / "collector.db").write_bytes(b"this is not a database" * 100)
    done = run_collect(node)
    assert done.returncode == 0, done.stderr
    assert "collector database" in done.stderr and "corrupt" in done.stderr
    aside = [p for p in data_log.iterdir() if p.name.startswith("collector.db.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    with sqlite3.connect(data_log / "collector.db") as db:
        assert db.execute("select count(*) from user").fetchone()[0] >= 2


def test_collect_needs_root_config(tmp_path: Path) -> None:
    config = tmp_path / "slapos.cfg"
    config.write_text(f"[slapos]\ncomputer_id = C\ninstance_root = {tmp_path}\n")
    done = subprocess.run(
        [sys.executable, "-m", "slapos", "node", "collect", "--cfg", str(config)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 1
    assert "partition_amount" in done.stderr
    assert "Traceback" not in done.stderr
