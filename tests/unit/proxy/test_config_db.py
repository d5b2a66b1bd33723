"""slapos-proxy.cfg parsing, schema creation and migration of old upstream databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.errors import ConfigError
from slapos.proxy import db
from slapos.proxy.config import DEFAULT_HTTP_SERVER, load_proxy_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slapos-proxy.cfg"
    path.write_text(text)
    return path


def test_keys_spellings_sections_and_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "[slapos]\ncomputer_id = COMP\nhost = ::1\n[slapproxy]\nport = 5000\n"
        "database-uri = /tmp/x.db\nhost = 127.0.0.1\nsoftware_product_list =\n  kvm http://kvm\n"
        "shacache-content-directory = /tmp/c\nshacache_metadata_directory = /tmp/m\n"
        "[multimaster/https://other/]\nkey = /k\ncert = /c\nsoftware_release_list =\n"
        "  http://a\n  http://b\n",
    )
    config = load_proxy_config(path, {"port": 6000})
    assert config.computer_id == "COMP" and config.database_uri == "/tmp/x.db"
    assert config.port == 6000  # command line wins
    assert config.host == "::1"  # first section of the file wins
    assert config.software_product_list == {"kvm": "http://kvm"}
    assert config.shacache_content_directory == Path("/tmp/c")
    assert config.shacache_metadata_directory == Path("/tmp/m")
    entry = config.multimaster["https://other/"]
    assert entry.software_release_list == ("http://a", "http://b") and entry.key == "/k"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[slapos]\ncomputer_id = C\n[slapproxy]\nport = 1\n", "database_uri is required"),
        ("[slapos]\ncomputer_id = C\n[slapproxy]\ndatabase_uri = x\n", "port is required"),
        ("[slapproxy]\nport = 1\ndatabase_uri = x\n", "computer_id is required"),
        ("[slapos]\ncomputer_id = C\n[slapproxy]\nport = x\ndatabase_uri = x\n", "whole number"),
        ("[slapproxy]\nport=1\ndatabase_uri=x\ncomputer_id=c\ntls_key=/k\n", "go together"),
        ("[slapproxy]\nport=1\ndatabase_uri=x\ncomputer_id=c\nworkers=0\n", "at least 1"),
        ("[slapproxy]\nport=1\ndatabase_uri=x\ncomputer_id=c\nthreads=x\n", "whole number"),
        ("[slapproxy]\nport=1\ndatabase_uri=x\ncomputer_id=c\nhead_timeout=0\n", "above 0"),
        ("[slapproxy]\nport=1\ndatabase_uri=x\ncomputer_id=c\nread-timeout=x\n", "seconds"),
        ("[slapproxy]\nport=1\ndatabase_uri=x\ncomputer_id=c\nmax_body_size=1T\n", "a size"),
        (
            "[slapproxy]\nport=1\ndatabase_uri=x\ncomputer_id=c\nthreads=9\nmax_connections=8\n",
            "must not exceed",
        ),
    ],
)
def test_missing_or_bad_keys(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_proxy_config(_write(tmp_path, text))


def test_proxy_start_without_database_is_one_line_exit_1(tmp_path: Path) -> None:
    ctx = Context.for_test(tmp_path)
    path = _write(tmp_path, "[slapos]\ncomputer_id = C\n[slapproxy]\nport = 1\n")
    assert main(["proxy", "start", "--cfg", str(path)], ctx=ctx) == 1
    errors = ctx.stderr.getvalue()  # type: ignore[attr-defined]
    assert "database_uri is required" in errors and "Traceback" not in errors


def test_proxy_start_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = _write(
            tmp_path,
            f"[slapos]\ncomputer_id = C\n[slapproxy]\nport = {port}\n"
            f"database_uri = {tmp_path}/db\n",
        )
        ctx = Context.for_test(tmp_path)
        assert main(["proxy", "start", "--cfg", str(path)], ctx=ctx) == 1
    assert "cannot listen on 127.0.0.1:" in ctx.stderr.getvalue()  # type: ignore[attr-defined]


def test_fresh_database_schema(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "p.db")
    db.initialize(conn, tmp_path / "p.db")
    assert set(db.table_versions(conn).values()) == {"18"}
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.REVISION
    db.initialize(conn, tmp_path / "p.db")  # idempotent


def test_migrates_an_old_upstream_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE computer16 (reference VARCHAR(255), address VARCHAR(255),
                                 netmask VARCHAR(255), PRIMARY KEY (reference));
        CREATE TABLE partition16 (reference VARCHAR(255), computer_reference VARCHAR(255),
            slap_state VARCHAR(255), software_release VARCHAR(255), xml TEXT,
            connection_xml TEXT, slave_instance_list TEXT, software_type VARCHAR(255),
            partition_reference VARCHAR(255), requested_by VARCHAR(255),
            requested_state VARCHAR(255), timestamp REAL,
            PRIMARY KEY (reference, computer_reference));
        INSERT INTO computer16 VALUES ('C', '1.2.3.4', '255.0.0.0');
        INSERT INTO partition16 VALUES ('slappart0', 'C', 'busy', 'http://sr', NULL, NULL, NULL,
            'default', 'root', '', 'started', 1.5);
        INSERT INTO partition16 VALUES ('slappart1', 'C', 'busy', 'http://sr', NULL, NULL, NULL,
            'default', 'child', 'slappart0', 'started', 2.5);
        """
    )
    old.commit()
    old.close()
    conn = db.connect(path)
    db.initialize(conn, path)
    assert set(db.table_versions(conn).values()) == {"18"}
    rows = conn.execute(
        "SELECT reference, partition_reference, requested_by FROM partition18 ORDER BY reference"
    ).fetchall()
    # before v17 requested_by named the parent partition; now the tree root's title
    assert [tuple(r) for r in rows] == [("slappart0", "root", ""), ("slappart1", "child", "root")]
    assert list(tmp_path.glob("old.db-backup-16to18-*.sql"))


@pytest.mark.parametrize("problem", ["no such directory", "not a database"])
def test_unusable_database_is_one_line_exit_1(tmp_path: Path, problem: str) -> None:
    database = tmp_path / "missing" / "db"
    if problem == "not a database":
        database = tmp_path / "garbage.db"
        database.write_bytes(b"this is not sqlite" * 100)
    path = _write(
        tmp_path,
        f"[slapos]\ncomputer_id = C\n[slapproxy]\nport = 0\ndatabase_uri = {database}\n",
    )
    ctx = Context.for_test(tmp_path)
    assert main(["proxy", "start", "--cfg", str(path)], ctx=ctx) == 1
    errors = ctx.stderr.getvalue()  # type: ignore[attr-defined]
    assert "database" in errors and "Traceback" not in errors


def test_local_software_release_root_moves(tmp_path: Path) -> None:
    from slapos.proxy.app import create_app
    from slapos.proxy.config import ProxyConfig

    database = str(tmp_path / "db")
    old, new = tmp_path / "old", tmp_path / "new"

    def app(root: Path):  # type: ignore[no-untyped-def]
        return create_app(ProxyConfig(path=None, database_uri=database, computer_id="C",
                                      local_software_release_root=str(root)))  # fmt: skip

    first = app(old)
    first.write(None, lambda m: m.supply("C", f"{old}/sr/software.cfg", "available"))
    first.write(None, lambda m: m.supply("C", "http://remote/software.cfg", "available"))
    app(new)
    conn = sqlite3.connect(database)
    urls = sorted(r[0] for r in conn.execute("SELECT url FROM software18"))
    assert urls == [f"{new}/sr/software.cfg", "http://remote/software.cfg"]
    assert list(tmp_path.glob("db-backup-*.sql"))


def test_write_transaction_never_leaves_a_transaction_open(tmp_path: Path) -> None:
    """A COMMIT that fails (here a deferred foreign key) rolls back: the pooled
    connection goes back clean, and what the transaction wrote is gone."""
    from slapos.proxy.db import write_transaction

    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.executescript(
        "PRAGMA foreign_keys = ON; CREATE TABLE p (id INTEGER PRIMARY KEY);"
        "CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);"
    )
    with pytest.raises(sqlite3.IntegrityError), write_transaction(conn):
        conn.execute("INSERT INTO c VALUES (42)")
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM c").fetchone()[0] == 0
    with pytest.raises(KeyError), write_transaction(conn):
        conn.execute("INSERT INTO p VALUES (1)")
        raise KeyError("boom")
    assert not conn.in_transaction and conn.execute("SELECT count(*) FROM p").fetchone() == (0,)
    with write_transaction(conn):
        conn.execute("INSERT INTO p VALUES (2)")
    assert conn.execute("SELECT id FROM p").fetchall() == [(2,)]


def test_serving_keys_have_defaults_and_accept_units(tmp_path: Path) -> None:
    base = "[slapos]\ncomputer_id = C\n[slapproxy]\nport = 1\ndatabase_uri = x\n"
    default = load_proxy_config(_write(tmp_path, base)).serving
    assert (default.workers, default.threads, default.max_body_size) == (1, 8, 64 * 1024**2)
    serving = load_proxy_config(
        _write(
            tmp_path,
            base + "workers = 3\nmax-body-size = 2M\nmax_cache_body_size = 1GiB\n"
            "body_spool_size = 4096\nhead_timeout = 2.5\n",
        )
    ).serving
    assert serving.workers == 3 and serving.max_body_size == 2 * 1024**2
    assert serving.max_cache_body_size == 1024**3 and serving.body_spool_size == 4096
    assert serving.head_timeout == 2.5


def test_http_server_is_gunicorn_or_granian(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "[slapos]\ncomputer_id = C\n[slapproxy]\nport = 1\ndatabase_uri = x\n"
    tls = "tls_certificate = c.pem\ntls_key = k.pem\n"

    def server(extra: str) -> str:
        return load_proxy_config(_write(tmp_path, text + extra)).serving.http_server

    assert server("") == DEFAULT_HTTP_SERVER and server(tls) == "gunicorn"
    assert server("http_server = Granian\n") == "granian"
    assert server("http_server = gunicorn\n" + tls) == "gunicorn"
    assert not caplog.text
    # earlier versions' values: the default, with a warning
    assert server("http_server = waitress\n") == DEFAULT_HTTP_SERVER
    assert "http_server = waitress is an earlier version's value, ignored" in caplog.text
    with pytest.raises(ConfigError, match="http_server must be gunicorn or granian, got 'x'"):
        server("http_server = x\n")
    with pytest.raises(ConfigError, match="granian cannot serve TLS") as refused:
        server("http_server = granian\n" + tls)
    assert "\n" not in str(refused.value)


def test_a_mistyped_key_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # tls_cert_file for tls_certificate: the proxy would serve plain http without a word
    text = "[slapos]\ncomputer_id = C\n[slapproxy]\nport = 1\ndatabase_uri = x\n"
    config = load_proxy_config(_write(tmp_path, text + "tls_cert_file = c.pem\nmy_note = 1\n"))
    assert config.tls is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"{tmp_path / 'slapos-proxy.cfg'}: [slapproxy] tls_cert_file is not a key of the proxy "
        "(did you mean tls_certificate?): ignored"
    ]


@pytest.mark.parametrize("command", [["proxy", "show"], ["proxy", "start"]])
def test_database_uri_of_another_kind_is_one_line_exit_1(tmp_path: Path, command) -> None:
    # sqlite takes any other string as a path: mysql://h/db, a file under a directory "mysql:"
    path = _write(tmp_path, "[slapos]\ncomputer_id = C\n[slapproxy]\nport = 0\n")
    ctx = Context.for_test(tmp_path)
    assert main([*command, "-u", "mysql://h/db", "--cfg", str(path)], ctx=ctx) == 1
    errors = ctx.stderr.getvalue()  # type: ignore[attr-defined]
    assert len(errors.strip().splitlines()) == 1, errors
    assert "database_uri 'mysql://h/db': unsupported scheme 'mysql'" in errors
