"""Serve the proxy with gunicorn until SIGTERM/SIGINT (granian: `slapos.proxy.granian_server`).

gunicorn is embedded (its `BaseApplication`), with our worker class
(`slapos.proxy.worker.ProxyWorker`: gthread plus deadlines) and our WSGI layer
(`slapos.proxy.wsgi`: body limits and spooling, the client certificate's name) in
front of the application. The listening socket is made here, so that an address in use
is one line at once (gunicorn would retry for 5 s), and IPv6 hosts are accepted with or
without brackets.

* `workers = 1` (the default): the worker runs in this process; no arbiter, no fork.
* `workers = N > 1`: gunicorn's arbiter forks N workers sharing the socket, restarts one
  that dies, and stops them all on SIGTERM/SIGINT. The application (and its database
  checks and migrations) is made once, before the fork; each worker then opens its own
  database connections (the application's caches are checked against the database's
  generation counter, so another process's writes are seen at once).

On SIGTERM or SIGINT the listening socket closes, requests in progress get
`stop_timeout` seconds to finish, and `serve()` returns normally.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import socket
import sys
from collections.abc import Callable
from typing import Any

from slapos.errors import SlapOSError
from slapos.proxy.app import ProxyApp, create_app
from slapos.proxy.config import ProxyConfig, ServingConfig
from slapos.proxy.wsgi import BodyLimits, ServerLayer

log = logging.getLogger(__name__)


class ListenError(SlapOSError):
    """The configured host/port cannot be bound (in use, no such address...)."""


class ServeError(SlapOSError):
    """The server could not start its workers or stopped on an error."""


def listen_address(host: str, port: int) -> str:
    """`[::1]:5000`, `127.0.0.1:5000`: how the address is shown."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def body_limits(config: ProxyConfig) -> BodyLimits:
    """Request body limits: large uploads only where a shacache is served."""
    serving = config.serving
    cache = config.shacache_content_directory is not None
    return BodyLimits(
        max_body=serving.max_body_size,
        max_cache_body=serving.max_cache_body_size if cache else serving.max_body_size,
        spool=serving.body_spool_size,
    )


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening socket on the first address `host` resolves to (IPv4 or IPv6)."""
    name = host.strip().strip("[]")
    shown = listen_address(host, port)
    try:
        family, _, _, _, address = socket.getaddrinfo(
            name or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ListenError(f"cannot listen on {shown}: {reason}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {shown}: {exc.strerror or exc}") from exc
    return sock


def raise_file_limit(serving: ServingConfig) -> None:
    """Room for every allowed connection: the soft limit up to the hard one if needed."""
    wanted = serving.max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "max_connections = %d but only %d file descriptors are allowed (ulimit -n)",
            serving.max_connections,
            target,
        )


def _gunicorn_settings(config: ProxyConfig) -> dict[str, Any]:
    serving = config.serving
    settings: dict[str, Any] = {
        "worker_class": "slapos.proxy.worker.ProxyWorker",
        "workers": serving.workers,
        "threads": serving.threads,
        "worker_connections": serving.max_connections,
        "keepalive": math.ceil(serving.keepalive_timeout),
        "graceful_timeout": math.ceil(serving.stop_timeout),
        # the worker's heartbeat: its event loop beats each second, whatever the requests do
        "timeout": 60,
        "limit_request_line": serving.max_request_line,
        "limit_request_fields": serving.max_header_fields,
        "limit_request_field_size": serving.max_header_field_size,
        "logger_class": "slapos.proxy.worker.ProxyLog",
        "preload_app": True,
        # the application reads X-Forwarded-* itself (one reverse-proxy hop, any peer)
        "forwarded_allow_ips": "",
        "proc_name": "slapos-proxy",
        "control_socket_disable": True,
    }
    if config.tls is not None:
        settings.update(
            certfile=str(config.tls.certificate),
            keyfile=str(config.tls.key),
            # the worker's event loop does the handshake, without blocking
            do_handshake_on_connect=False,
        )
    return settings


def serve(
    config: ProxyConfig,
    *,
    on_ready: Callable[[str], None] | None = None,
    app: ProxyApp | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; `on_ready(url)` once listening.

    `http_server = granian`: served by `slapos.proxy.granian_server` instead."""
    if config.serving.http_server == "granian":
        from slapos.proxy import granian_server

        granian_server.serve(config, on_ready=on_ready, app=app)
        return
    context = None
    if config.tls is not None:
        import ssl

        from slapos.proxy.tls import server_context

        try:
            context = server_context(config.tls)
        except (OSError, ssl.SSLError) as exc:
            raise ListenError(f"cannot load the TLS certificate, key or CA: {exc}") from exc
    app = app or create_app(config)
    app.close()  # workers share nothing but the database: no connection crosses the fork
    sock = listen(config.host, config.port)
    try:
        raise_file_limit(config.serving)
        host, port = sock.getsockname()[:2]
        scheme = "https" if config.tls is not None else "http"
        url = f"{scheme}://{listen_address(host, port)}"
        certificates = ""
        if config.tls is not None:
            required = "client certificates required" if config.tls.ca else "no client certificates"
            certificates = f"{required}, "
        workers = config.serving.workers
        log.info(
            "slapos proxy serving %s (gunicorn, %s%d process%s x %d threads, database %s, "
            "computer %s)",
            url,
            certificates,
            workers,
            "es" if workers > 1 else "",
            config.serving.threads,
            app.database,
            config.computer_id,
        )
        application = _Application(
            ServerLayer(app, body_limits(config)), config, context, sock.family
        )
        listener = application.listener(sock)
    except BaseException:
        sock.close()
        raise
    if on_ready is not None:
        on_ready(url)
    try:
        if workers > 1:
            application.run_arbiter(listener)
        else:
            application.run_worker(listener)
    finally:
        app.close()
    log.info("slapos proxy stopped")


def _application_class() -> type:
    """gunicorn's BaseApplication, imported when a proxy starts (not for `--help`)."""
    from gunicorn.app.base import BaseApplication

    return BaseApplication  # type: ignore[no-any-return]


class _Application:
    """The embedded gunicorn application: settings from ProxyConfig, our WSGI callable."""

    def __init__(
        self, wsgi: ServerLayer, config: ProxyConfig, context: Any, family: socket.AddressFamily
    ) -> None:
        settings = _gunicorn_settings(config)
        if context is not None:
            settings["ssl_context"] = lambda _conf, _default: context
        base = _application_class()

        class Embedded(base):  # type: ignore[misc,valid-type]
            def load_config(self) -> None:
                for key, value in settings.items():
                    self.cfg.set(key, value)

            def load(self) -> ServerLayer:
                return wsgi

        self.gunicorn: Any = Embedded()
        self.gunicorn.serving = config.serving
        self.family = family

    def listener(self, sock: socket.socket) -> Any:
        """Our listening socket as one of gunicorn's listeners."""
        from gunicorn import sock as gsock

        kind = gsock.TCP6Socket if self.family == socket.AF_INET6 else gsock.TCPSocket
        address = sock.getsockname()[:2]
        return kind(address, self.gunicorn.cfg, _quiet_log(), fd=sock.detach())

    def run_worker(self, listener: Any) -> None:
        """One worker, in this process."""
        from slapos.proxy.worker import ProxyLog, ProxyWorker

        cfg = self.gunicorn.cfg
        self.gunicorn.in_process = True
        worker = ProxyWorker(
            1, os.getppid(), [listener], self.gunicorn, cfg.timeout, cfg, ProxyLog(cfg)
        )
        try:
            worker.init_process()
        except SystemExit as exc:  # gunicorn's way out of a worker (e.g. a second SIGQUIT)
            if exc.code not in (None, 0):
                raise ServeError(f"the server stopped with status {exc.code}") from None
        finally:
            listener.close()
            worker.tmp.close()

    def run_arbiter(self, listener: Any) -> None:
        """N workers forked by gunicorn's arbiter; returns when they have all stopped."""
        from gunicorn.arbiter import Arbiter

        class ProxyArbiter(Arbiter):  # type: ignore[misc]
            #: a fresh table per arbiter (gunicorn's is a class attribute)
            def __init__(self, app: Any) -> None:
                self.WORKERS: dict[int, Any] = {}
                super().__init__(app)

            def handle_int(self) -> None:  # SIGINT: as gracefully as SIGTERM
                raise StopIteration

        parent = os.getpid()
        arbiter = ProxyArbiter(self.gunicorn)
        arbiter.LISTENERS = [listener]
        try:
            arbiter.run()
        except SystemExit as exc:
            if os.getpid() != parent:  # a worker's end: never run the caller's code
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(exc.code if isinstance(exc.code, int) else 1)
            if exc.code not in (None, 0):
                raise ServeError(
                    f"the server stopped with status {exc.code} (see the messages above)"
                ) from None


def _quiet_log() -> Any:
    from slapos.proxy.worker import ProxyLog

    return ProxyLog(None)
