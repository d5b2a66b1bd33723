"""Our proxy on a real PostgreSQL server: failures at start, a lost connection, the server
going away and coming back, `proxy show`, and `proxy migrate` from sqlite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from slapos.slap.marshal import dumps, loads
from tests.fixtures.common import REPO, free_port
from tests.fixtures.postgres import PostgresServer, start_postgres
from tests.fixtures.proxy import load_partitions, request_form, start_proxy
from tests.fixtures.upstream import RunningProxy, write_proxy_config

SR = "http://sr.example.invalid/software.cfg"


def slapos(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slapos", *argv],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def request_instance(
    url: str, title: str, parameters: dict[str, str] | None = None, *, shared: bool = False
) -> requests.Response:
    form = request_form(title, parameters, shared=shared)
    return requests.post(f"{url}/requestComputerPartition", data=form, timeout=30)


def full(proxy: RunningProxy) -> str:
    answer = requests.get(
        f"{proxy.url}/getFullComputerInformation", params={"computer_id": proxy.computer_id},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.text


def failed_start(tmp_path: Path, uri: str) -> str:
    """`slapos proxy start` on the database `uri`: exit 1 and one line, returned."""
    config, _ = write_proxy_config(tmp_path, free_port())
    config.write_text(
        config.read_text().replace(f"database_uri = {tmp_path}/proxy.db", f"database_uri = {uri}")
    )
    result = slapos("proxy", "start", "--cfg", str(config), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], result.stderr
    return lines[0]


def test_start_with_the_server_down_is_one_line_exit_1(tmp_path: Path) -> None:
    uri = f"postgresql://slapos:hidden-pw@127.0.0.1:{free_port()}/slapos"
    line = failed_start(tmp_path, uri)
    assert "postgresql://slapos:***@127.0.0.1:" in line
    assert "hidden-pw" not in line


def test_start_with_a_refused_login_is_one_line_exit_1(
    postgres_server: PostgresServer, postgres_uri: str, tmp_path: Path
) -> None:
    uri = postgres_uri.replace(":s3cret-", ":wrong-")
    assert uri != postgres_uri
    line = failed_start(tmp_path, uri)
    assert "password authentication failed" in line
    assert "wrong-" not in line


def test_lost_connections_are_retried_and_a_dead_server_is_503(tmp_path: Path) -> None:
    """Its own server: this test stops and restarts it."""
    servers = start_postgres()
    server = next(servers)
    try:
        server.psql("CREATE DATABASE fleet")
        proxies = start_proxy(tmp_path / "proxy", database_uri=server.uri("fleet"))
        proxy = next(proxies)
        try:
            load_partitions(proxy.url, proxy.computer_id, 4)
            first = loads(request_instance(proxy.url, "before").text)
            # the server ends every session of the proxy: the next request reconnects
            ended = server.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name='slapos-proxy'",
                "fleet",
            )
            assert int(ended) >= 1
            answer = request_instance(proxy.url, "after-kill")
            assert answer.status_code == 200, answer.text
            server.stop("fast")
            down = request_instance(proxy.url, "while-down")
            assert down.status_code == 503
            assert down.text.startswith("database unavailable:") and "\n" not in down.text
            assert "s3cret" not in down.text
            server.start()
            again = request_instance(proxy.url, "before")
            assert again.status_code == 200, again.text
            assert (
                loads(again.text).state["slap_computer_partition_id"]
                == first.state["slap_computer_partition_id"]
            ), "a write acknowledged before the restart was lost"
            assert request_instance(proxy.url, "after-restart").status_code == 200
            assert "Traceback" not in proxy.log.read_text()
        finally:
            next(proxies, None)
    finally:
        next(servers, None)


def _populate(proxy: RunningProxy) -> None:
    load_partitions(proxy.url, proxy.computer_id, 4)
    supplied = requests.post(
        f"{proxy.url}/supplySupply",
        data={"url": SR, "computer_id": proxy.computer_id, "state": "available"},
        timeout=30,
    )
    assert supplied.status_code == 200
    root = loads(request_instance(proxy.url, "root", {"size": "big", "é": "ü"}).text)
    partition = root.state["slap_computer_partition_id"]
    assert request_instance(proxy.url, "front", {"x": "1"}, shared=True).status_code == 200
    published = requests.post(
        f"{proxy.url}/setComputerPartitionConnectionXml",
        data={
            "computer_id": proxy.computer_id, "computer_partition_id": partition,
            "connection_xml": dumps({"url": "http://root.example.invalid/"}),
        },
        timeout=30,
    )  # fmt: skip
    assert published.status_code == 200, published.text
    assert request_instance(proxy.url, "second").status_code == 200
    for path, data in (  # what a node reports, kept by our proxy (slapos_status)
        ("startedComputerPartition", {"computer_partition_id": partition}),
        ("softwareReleaseError", {"url": SR, "message": "gcc: not found"}),
    ):
        reported = requests.post(
            f"{proxy.url}/{path}", data={"computer_id": proxy.computer_id, **data}, timeout=30
        )
        assert reported.status_code == 200, reported.text


def statuses(database_uri: str) -> list[object]:
    from slapos.proxy import status
    from slapos.proxy.db import open_database

    database = open_database(database_uri)
    conn = database.connect()
    try:
        return list(status.every(conn))
    finally:
        conn.close()


def test_migrate_a_sqlite_master_into_postgresql(
    postgres_server: PostgresServer, postgres_uri: str, tmp_path: Path
) -> None:
    proxies = start_proxy(tmp_path / "sqlite")
    proxy = next(proxies)
    try:
        _populate(proxy)
        before = full(proxy)
    finally:
        next(proxies, None)
    shown_before = slapos("proxy", "show", "--cfg", str(proxy.config), cwd=tmp_path)
    assert shown_before.returncode == 0, shown_before.stderr

    migrated = slapos(
        "proxy", "migrate", "--cfg", str(proxy.config), "--to", postgres_uri, cwd=tmp_path
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "4 partition18" in migrated.stdout
    assert "1 computer and 4 partitions read the same" in migrated.stdout
    assert "2 slapos_status" in migrated.stdout
    assert "s3cret" not in migrated.stdout + migrated.stderr
    reports = statuses(postgres_uri)
    assert reports == statuses(str(proxy.database)) and len(reports) == 2

    again = slapos(
        "proxy", "migrate", "--cfg", str(proxy.config), "--to", postgres_uri, cwd=tmp_path
    )
    assert again.returncode == 1
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert "already holds proxy data" in again.stderr

    proxies = start_proxy(tmp_path / "pg", database_uri=postgres_uri)
    on_pg = next(proxies)
    try:
        assert full(on_pg) == before, "a partition reads differently after the migration"
        shown = slapos("proxy", "show", "--cfg", str(on_pg.config), cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines()[0].startswith("Using database: postgresql://slapos:***@")
        assert shown.stdout.splitlines()[1:] == shown_before.stdout.splitlines()[1:]
        # and it keeps working: the next request lands on the next free partition
        answer = loads(request_instance(on_pg.url, "third").text)
        assert answer.state["slap_computer_partition_id"] == "slappart2"
    finally:
        next(proxies, None)


def test_show_names_a_missing_postgresql_table_set(
    postgres_server: PostgresServer, postgres_uri: str, tmp_path: Path
) -> None:
    result = slapos("proxy", "show", "-u", postgres_uri, cwd=tmp_path)
    assert result.returncode == 1
    assert "has no proxy tables of schema 18" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_revocation_on_postgresql_and_through_migrate(
    postgres_server: PostgresServer, postgres_uri: str, tmp_path: Path
) -> None:
    """Revoked certificates live in the database on PostgreSQL too, `proxy migrate` copies
    them, and a proxy on PostgreSQL refuses them."""
    from slapos.proxy.app import create_app
    from slapos.proxy.config import ProxyConfig
    from tests.unit.proxy.test_app import Client
    from tests.unit.proxy.test_identity import _pki

    config, _ = write_proxy_config(tmp_path / "sqlite", free_port(), "COMP", "")
    revoked = slapos("proxy", "revoke", "--cfg", str(config), "user:mallory", cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    migrated = slapos("proxy", "migrate", "--cfg", str(config), "--to", postgres_uri, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    more = slapos("proxy", "revoke", "-u", postgres_uri, "user:eve", "--list", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    lines = more.stdout.splitlines()
    assert lines[0] == "revoked user:eve"
    assert [line.split("\t")[0] for line in lines[1:]] == ["user:mallory", "user:eve"]

    app = create_app(ProxyConfig(path=None, database_uri=postgres_uri, computer_id="COMP",
                                 tls=_pki(tmp_path)))  # fmt: skip
    try:
        for name in ("user:mallory", "user:eve"):
            status, text = Client(app, peer=name).get("/getRunId")
            assert status == 403 and "has been revoked" in text
        assert Client(app, peer="user:alice").get("/getRunId")[0] == 200
    finally:
        app.close()
