"""The proxy as a WSGI application: `create_app(config, db) -> WSGI callable`.

A small router, no web framework: legacy SLAP routes (`slapos.proxy.legacy`), the
HATEOAS subset under `/hateoas` (`slapos.proxy.hateoas`), JSON-RPC `slapos.*.v0.*`
(`slapos.proxy.jsonrpc`), the web panel with `/public/` and `/http_proxy/`
(`slapos.proxy.panel`) and the shacache/shadir mount under `/shacache`.

Every answer that is not a success is a 4xx/5xx with a one-line text reason; an
unexpected exception is logged with its traceback and answered 500 without one.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slapos.proxy import db as dbmod
from slapos.proxy.config import ProxyConfig
from slapos.proxy.forward import target_finder
from slapos.proxy.identity import authorize, certificate_identity
from slapos.proxy.model import (
    ForwardNeeded,
    InstanceRequest,
    ProxyHTTPError,
    Requester,
    RequestResult,
)
from slapos.proxy.panel import guard
from slapos.proxy.request import Request
from slapos.proxy.service import Master
from slapos.proxy.store import Store
from slapos.slap.marshal import MarshalError

if TYPE_CHECKING:
    from slapos.system import Clock

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
_REASONS = {
    200: "OK", 302: "Found", 304: "Not Modified", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 410: "Gone", 413: "Payload Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 520: "Unknown Error", 523: "Origin Is Unreachable",
    524: "A Timeout Occurred",
}  # fmt: skip


class DatabaseUnavailable(ProxyHTTPError):
    """The database did not answer (busy, down, or the connection lost twice)."""

    status = 503


@dataclass
class Response:
    body: bytes | str = b""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: (path, size): the body is this file, sent in blocks (`body` is ignored)
    file: tuple[str, int] | None = None

    def payload(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


def text(body: str, status: int = 200) -> Response:
    return Response(body, status)


def xml(body: str) -> Response:
    return Response(body, 200, "text/xml; charset=utf-8")


def redirect(location: str, status: int = 302) -> Response:
    return Response(b"", status, headers=[("Location", location)])


Handler = Callable[["ProxyApp", Request], Response]


class ProxyApp:
    """The WSGI callable; holds one database connection per serving thread.

    Several processes may serve one database (sqlite file or PostgreSQL): what one commits
    is seen by the others at once, because both caches here are checked against the
    database's `generation` counter (bumped by every write transaction) before use.
    """

    def __init__(
        self,
        config: ProxyConfig,
        database: str | Path | dbmod.Database,
        *,
        clock: Clock | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> None:
        from slapos.proxy import hateoas, jsonrpc, legacy, panel

        self.config = config
        self.db = (
            database if isinstance(database, dbmod.Database) else dbmod.open_database(database)
        )
        #: the database as shown in logs and messages (a PostgreSQL password masked)
        self.database = self.db.shown
        #: the time of day, as the records' timestamps take it (a test passes a FakeClock)
        self.now = clock.time if clock is not None else time.time
        self.run_id = os.urandom(16).hex()  # not `secrets`: hashlib costs memory
        #: idle database connections, taken by one request at a time (list.pop/append
        #: are atomic): a new connection (open + PRAGMAs) is made only when all are busy
        self._idle: list[Any] = []
        #: the pool belongs to this process: a forked worker opens its own connections
        self._pid = os.getpid()
        #: a single connection shared by every thread (in-memory databases)
        self._shared = connection
        self._shared_lock = threading.RLock()
        if connection is not None:
            connection.row_factory = sqlite3.Row
            connection.isolation_level = None
        self._generation = 0
        self._generation_lock = threading.Lock()
        #: sqlite has one writer at a time: serving threads queue here (a prompt hand-over)
        #: rather than in sqlite's busy handler, which sleeps and polls
        self._write_lock = threading.Lock()
        #: (partition, computer) -> addresses, for writers (see Store.address_cache),
        #: valid while the database generation is `_addresses_generation`
        self._addresses: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._addresses_generation: int | None = None
        #: computer id -> (generation, marshalled getFullComputerInformation answer)
        self.computer_cache: dict[str, tuple[int, str]] = {}
        self.routes: dict[str, tuple[frozenset[str], Handler]] = {}
        self.routes.update(legacy.routes())
        self.routes.update(jsonrpc.routes())
        self.routes.update(panel.routes())
        self.prefix_routes: list[tuple[str, Handler]] = [
            ("/hateoas", hateoas.dispatch),
            ("/shacache", _shacache),
            *panel.prefix_routes(),
        ]
        self._cache_app: Callable[..., Iterable[bytes]] | None = None
        self._cache_lock = threading.Lock()
        conn = self._checkout()
        try:
            self.db.initialize(conn)
            self._rebase_local_software(conn)
        finally:
            self._checkin(conn)
        # no connection is kept open before serving: a server forking workers after this
        # point must not share one
        self.close()

    # ---- database ---------------------------------------------------------------------
    #: idle connections kept open; more concurrent requests open (and then close) more
    POOL_SIZE = 8

    def _checkout(self) -> Any:
        if self._shared is not None:
            self._shared_lock.acquire()
            return self._shared
        if self._pid != os.getpid():
            # forked: these connections are the parent's; dropped, never closed (closing
            # a PostgreSQL one would end the parent's session)
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            return self.db.connect()

    def _checkin(self, conn: Any) -> None:
        if self._shared is not None:
            self._shared_lock.release()
        elif len(self._idle) < self.POOL_SIZE:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close the idle database connections (the server has stopped)."""
        while self._idle:
            self._idle.pop().close()

    def _run(self, work: Callable[[Any], Any]) -> Any:
        """`work(connection)`; a connection found lost is replaced and `work` retried once,
        then (or when the database is busy) DatabaseUnavailable, answered 503."""
        db = self.db
        for attempt in (1, 2):
            try:
                conn = self._checkout()
            except dbmod.DatabaseError as exc:
                if attempt == 1:
                    log.warning("%s; retrying once", exc)
                    continue
                raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
            try:
                result = work(conn)
            except db.unavailable as exc:
                if self._shared is None and db.lost(conn, exc):
                    db.discard(conn)
                    if attempt == 1:
                        log.warning(
                            "lost the connection to %s (%s); retrying once",
                            self.database,
                            _one_line(str(exc)),
                        )
                        continue
                else:
                    self._checkin(conn)
                raise DatabaseUnavailable(f"database unavailable: {_one_line(str(exc))}") from exc
            except BaseException:
                self._checkin(conn)
                raise
            self._checkin(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def current_generation(self) -> int:
        """The database's write counter now (one query, outside any transaction)."""
        return self._run(lambda conn: Store(conn).generation())  # type: ignore[no-any-return]

    @property
    def generation(self) -> int:
        """Write transactions committed through this process (tests, logs)."""
        return self._generation

    def master(
        self,
        conn: Any,
        request: Request | None = None,
        address_cache: dict[tuple[str, str], tuple[tuple[str, str], ...]] | None = None,
    ) -> Master:
        target = target_finder(self, request) if request is not None else None
        return Master(
            Store(conn, address_cache),
            self.config.computer_id,
            self.now,
            forward_target=target,
            strict_hosting=self.config.tls is not None and self.config.tls.ca is not None,
        )

    def write(
        self, request: Request | None, action: Callable[[Master], Any], *, report: bool = False
    ) -> Any:
        """Run `action` in one write transaction; bumps the database generation.

        `report=True`: the action only records what a node reports (slapos_status), which
        no cached answer holds and which is safe to write beside other writers: the
        generation stays (cached getFullComputerInformation answers stay valid) and, on
        PostgreSQL, the writers' lock is not taken.
        """
        if report:
            return self._run(lambda conn: self._write_report(conn, request, action))
        result = self._run(lambda conn: self._write(conn, request, action))
        with self._generation_lock:
            self._generation += 1
        return result

    def report(self, statement: Callable[[Any], bool]) -> bool:
        """Run `statement(conn)`, one self-contained write statement (what a node reports,
        status.record_instance), with no transaction around it: as `write(report=True)`,
        cached answers stay valid and PostgreSQL's writers' lock is not taken; on sqlite
        this process's writers queue here. Its answer is returned."""

        def work(conn: Any) -> bool:
            if self.db.path is not None:
                with self._write_lock:
                    return statement(conn)
            return statement(conn)

        return self._run(work)  # type: ignore[no-any-return]

    def _write_report(
        self, conn: Any, request: Request | None, action: Callable[[Master], Any]
    ) -> Any:
        if self.db.path is not None:  # sqlite: one writer at a time anyway, queue here
            with self._write_lock, self.db.write_transaction(conn):
                return action(self.master(conn, request))
        with self.db.write_transaction(conn, lock=False):
            return action(self.master(conn, request))

    def _write(self, conn: Any, request: Request | None, action: Callable[[Master], Any]) -> Any:
        with self._write_lock:
            # the address cache is only used by writers, one at a time (this lock and the
            # database's own writer lock): the generation read here is exact
            try:
                with self.db.write_transaction(conn):
                    store = Store(conn)
                    generation = store.generation()
                    if generation != self._addresses_generation:
                        self._addresses.clear()  # another process may have reformatted
                    master = self.master(conn, request, self._addresses)
                    result = action(master)
                    if not master.store.unchanged:
                        store.bump_generation()
                        generation += 1
                self._addresses_generation = generation
            except BaseException:
                self._addresses.clear()  # it may hold what was rolled back
                self._addresses_generation = None
                raise
        return result

    def request_instance(
        self, request: Request, spec: InstanceRequest, who: Callable[[Master], Requester]
    ) -> RequestResult:
        """Request an instance; one forwarded to another master is sent outside any
        transaction (a slow master must not hold the database), then remembered."""
        try:
            return self.write(request, lambda m: m.request(spec, who(m)))  # type: ignore[no-any-return]
        except ForwardNeeded as need:
            target, who_forwarded = need.target, need.who
        from slapos.proxy import forward

        wire = forward.forwarder(self)(target, spec, who_forwarded)
        return self.write(  # type: ignore[no-any-return]
            request, lambda m: m.forwarded(target, spec, who_forwarded, wire)
        )

    def read(self, action: Callable[[Master], Any]) -> Any:
        """Run `action` on one consistent snapshot."""

        def work(conn: Any) -> Any:
            with self.db.read_transaction(conn):
                return action(self.master(conn))

        return self._run(work)

    def issue_certificate(self, computer_id: str, partition_id: str | None) -> dict[str, str]:
        """The certificate a node or partition should use (empty without a CA key)."""
        tls = self.config.tls
        if tls is None or tls.ca is None or tls.ca_key is None:
            return {"certificate": "", "key": ""}
        from slapos.proxy.tls import issue_certificate

        identity = certificate_identity(computer_id, partition_id)
        stored_name = f"certificate/{identity}"

        def stored_pair(master: Master) -> dict[str, str] | None:
            stored = master.store.get_config(stored_name)
            if stored is None:
                return None
            pair = json.loads(stored)
            return {"certificate": pair["certificate"], "key": pair["key"]}

        # issued once, then read: no write transaction for a certificate that did not change
        known: dict[str, str] | None = self.read(stored_pair)
        if known is not None:
            return known

        def issue(master: Master) -> dict[str, str]:
            stored = master.store.get_config(stored_name)
            if stored is not None:
                pair = json.loads(stored)
                return {"certificate": pair["certificate"], "key": pair["key"]}
            assert tls is not None and tls.ca is not None and tls.ca_key is not None
            # after a revocation, the next free name: COMP/slappart0#1, #2...
            name, generation = identity, 0
            while master.store.is_revoked(name):
                generation += 1
                name = f"{identity}#{generation}"
            certificate, key = issue_certificate(tls.ca.read_bytes(), tls.ca_key.read_bytes(), name)
            master.store.set_config(
                stored_name, json.dumps({"certificate": certificate, "key": key, "name": name})
            )
            return {"certificate": certificate, "key": key}

        return self.write(None, issue)  # type: ignore[no-any-return]

    def _rebase_local_software(self, conn: Any) -> None:
        from slapos.proxy.localsr import rebase

        new_root = self.config.local_software_release_root
        if new_root is None:
            return
        with self.db.write_transaction(conn):
            store = Store(conn)
            rebase(store, new_root, self.db.path)
            store.bump_generation()

    # ---- WSGI -------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        if response is None:  # a mounted WSGI application answered itself
            return self._mounted(environ, start_response)
        payload = response.payload()
        size = len(payload) if response.file is None else response.file[1]
        headers = [("Content-Type", response.content_type), ("Content-Length", str(size))]
        headers.extend(response.headers)
        start_response(f"{response.status} {_REASONS.get(response.status, 'Unknown')}", headers)
        if request.method == "HEAD":
            return []
        if response.file is not None:
            return _file_blocks(response.file[0])
        return [payload]

    def dispatch(self, request: Request) -> Response | None:
        try:
            authorize(self, request)
            if request.method not in ("GET", "HEAD"):
                guard(self, request)
            route = self.routes.get(request.path)
            if route is not None:
                methods, handler = route
                if request.method not in methods and not (
                    request.method == "HEAD" and "GET" in methods
                ):
                    return text(f"method {request.method} not allowed on {request.path}", 405)
                return handler(self, request)
            for prefix, handler in self.prefix_routes:
                if request.path == prefix or request.path.startswith(prefix + "/"):
                    return handler(self, request)
            return text(f"unknown route {request.path}", 404)
        except DatabaseUnavailable as exc:
            log.warning("%s on %s", exc, request.path)
            return text(_one_line(str(exc)), exc.status)
        except ProxyHTTPError as exc:
            if request.path.startswith("/slapos."):  # JSON-RPC errors are JSON
                from slapos.proxy.jsonrpc import json_error

                return json_error(exc.status, _one_line(str(exc)))
            return text(_one_line(str(exc)), exc.status)
        except MarshalError as exc:
            return text(f"bad marshalled value: {_one_line(str(exc))}", 400)
        except self.db.unavailable as exc:
            log.warning("database unavailable on %s: %s", request.path, exc)
            return text(f"database unavailable: {_one_line(str(exc))}", 503)
        except _Mounted:
            return None
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            return text("internal error, see the proxy log", 500)

    def _mounted(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        assert self._cache_app is not None
        environ = dict(environ)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/shacache"
        environ["PATH_INFO"] = environ.get("PATH_INFO", "")[len("/shacache") :]
        return self._cache_app(environ, start_response)


class _Mounted(Exception):
    """Raised by a handler to let a mounted WSGI application answer."""


def _file_blocks(path: str, size: int = 256 * 1024) -> Iterable[bytes]:
    with open(path, "rb") as file:
        while block := file.read(size):
            yield block


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "error"


def _shacache(app: ProxyApp, request: Request) -> Response:
    """`/shacache/...`: the local binary cache (slapos.cache.server), when configured."""
    config = app.config
    if not (config.shacache_content_directory and config.shacache_metadata_directory):
        return text(
            "no local shacache: set shacache-content-directory and shacache-metadata-directory "
            "in [slapproxy]",
            404,
        )
    with app._cache_lock:
        if app._cache_app is None:
            try:
                from slapos.cache.server import create_cache_app  # type: ignore[import-not-found,unused-ignore]
            except ImportError:
                return text("the local shacache server (slapos.cache.server) is not available", 501)
            app._cache_app = create_cache_app(
                config.shacache_content_directory,
                config.shacache_metadata_directory,
                signing_key_path=config.shacache_signing_key_path,
                upstream_cache_url=config.shacache_upstream_cache_url,
                upstream_dir_url=config.shacache_upstream_dir_url,
            )
    raise _Mounted


def create_app(
    config: ProxyConfig,
    db: str | Path | sqlite3.Connection | None = None,
    *,
    clock: Clock | None = None,
) -> ProxyApp:
    """The proxy WSGI application over the database `db` (default: the config's).

    `db` is a `database_uri` (sqlite path, `sqlite:///PATH`, `postgresql://...`), or an
    open sqlite connection whose file the serving threads then open themselves (one
    connection per thread); an in-memory connection is shared by all threads, one
    transaction at a time.
    """
    if isinstance(db, sqlite3.Connection):
        rows = db.execute("PRAGMA database_list").fetchall()
        path = next((row[2] for row in rows if row[1] == "main"), "")
        if path:
            return ProxyApp(config, path, clock=clock)
        return ProxyApp(config, ":memory:", clock=clock, connection=db)
    return ProxyApp(config, db if db is not None else config.database_uri, clock=clock)
