"""gunicorn's threaded worker (gthread), with the deadlines the proxy needs.

gunicorn parses and frames every request (it refuses what is ambiguous: both lengths,
bad chunk sizes, bare LF, control bytes, folded lines...); what this subclass adds:

* a new connection waits in the worker's event loop, not in a thread, until it sends
  something: a thousand idle sockets cost no thread (gunicorn 27 gives each new
  connection a thread for up to 5 s first). It is closed if nothing comes within
  `handshake_timeout` (TLS) or `head_timeout`;
* deadlines, checked by the event loop about once a second: the TLS handshake must be
  done within `handshake_timeout` of the connection's acceptance, and each request head
  must be complete within `head_timeout` (from acceptance for a plain connection's first
  request, from the handshake's end for a TLS one, from the moment a kept-alive
  connection has something to read otherwise). A connection past its deadline is shut
  down, which ends the read its thread is blocked in;
* once the head is in, each read of the body and each write of the answer times out
  after `read_timeout`;
* SIGINT stops as gracefully as SIGTERM, and the listening socket is closed as soon as
  the worker stops (requests in progress finish); an accept() that fails for lack of file
  descriptors or memory is retried after a pause instead of ending the worker.

Also here: `ProxyLog`, gunicorn's logger interface on the standard `logging` loggers
(`slapos.proxy.server`, and `slapos.proxy.access` for one line per request).

Must not import slapos.cli.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import signal
import socket
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from slapos.proxy.config import ServingConfig

log = logging.getLogger("slapos.proxy.server")
access_log = logging.getLogger("slapos.proxy.access")

_NO_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _Connection(TConn):  # type: ignore[misc]
    """A connection that knows its worker's deadlines."""

    def __init__(self, worker: ProxyWorker, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(worker.cfg, sock, client, server)
        self.worker = worker
        self.accepted = time.monotonic()

    def init(self) -> None:
        if self.initialized:
            return
        super().init()
        if self.cfg.is_ssl:  # handshake done: the first head has its own deadline
            self.worker.reading[self] = time.monotonic() + self.worker.serving.head_timeout


class ProxyWorker(ThreadWorker):  # type: ignore[misc]
    """See the module docstring. `self.app.serving` (a ServingConfig) gives the limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.serving: ServingConfig = self.app.serving
        #: connections whose TLS handshake or request head a thread is reading -> deadline.
        #: Threads add and remove their own entries, the event loop removes expired ones
        #: (single dict operations: atomic, no lock needed).
        self.reading: dict[_Connection, float] = {}

    def is_parent_alive(self) -> bool:
        # in `slapos proxy start`'s own process (workers = 1) the parent is whoever started
        # it (a shell, supervisord): its end is no reason to stop
        return bool(getattr(self.app, "in_process", False)) or bool(super().is_parent_alive())

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGINT, self.handle_exit)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # stopping: refuse new connections at once rather than let them wait in the
            # backlog until the requests in progress are done (gunicorn closes at the end)
            for listener in self.sockets:
                listener.close()

    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            if exc.errno in _NO_RESOURCES:
                log.warning("cannot accept a connection: %s (retrying)", exc.strerror)
                time.sleep(0.1)
                return
            raise
        self.nr_conns += 1
        conn = _Connection(self, client_sock, client_addr, listener.getsockname())
        first = self.serving.handshake_timeout if self.cfg.is_ssl else self.serving.head_timeout
        conn.timeout = conn.accepted + first
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def handle(self, conn: _Connection) -> Any:
        if conn.initialized:  # a kept-alive connection with a new request coming
            deadline = time.monotonic() + self.serving.head_timeout
        elif self.cfg.is_ssl:
            deadline = conn.accepted + self.serving.handshake_timeout
        else:
            deadline = conn.accepted + self.serving.head_timeout
        self.reading[conn] = deadline
        try:
            return super().handle(conn)
        finally:
            self.reading.pop(conn, None)

    def handle_request(self, req: Any, conn: _Connection) -> Any:
        self.reading.pop(conn, None)
        conn.sock.settimeout(self.serving.read_timeout)
        return super().handle_request(req, conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self.reading.items()):
            if deadline <= now and self.reading.pop(conn, None) is not None:
                log.debug("closing %s: handshake or request head not done in time", conn.client)
                with contextlib.suppress(OSError):  # already closed by its thread
                    # the plain socket's shutdown (an SSLSocket's would touch its TLS state)
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)


class ProxyLog:
    """gunicorn's logger interface, on `logging` (our handlers, levels and format).

    gunicorn's own INFO messages (booting, listening...) are DEBUG here."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def setup(self, cfg: Any) -> None:
        self.cfg = cfg

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        log.critical(msg, *args, exc_info=kwargs.get("exc_info"))

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        log.error(msg, *args, exc_info=kwargs.get("exc_info"))

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        # a client's malformed request is its problem, not the proxy's (access log line too)
        level = logging.INFO if msg.startswith("Invalid request") else logging.WARNING
        log.log(level, msg, *args, exc_info=kwargs.get("exc_info"))

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        log.debug(msg, *args, exc_info=kwargs.get("exc_info"))

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        log.debug(msg, *args, exc_info=kwargs.get("exc_info"))

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        log.error(msg, *args, exc_info=True)

    def log(self, level: Any, msg: str, *args: Any, **kwargs: Any) -> None:
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
        log.log(level if isinstance(level, int) else logging.INFO, msg, *args)

    @property
    def access_log_enabled(self) -> bool:
        return access_log.isEnabledFor(logging.INFO)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        query = getattr(req, "query", "")
        access_log.info(
            '%s "%s %s%s" %s %d %.1fms',
            environ.get("REMOTE_ADDR", "-"),
            getattr(req, "method", "-"),
            getattr(req, "path", "-"),
            f"?{query}" if query else "",
            getattr(resp, "status_code", None) or str(getattr(resp, "status", "-"))[:3],
            getattr(resp, "sent", 0) or 0,
            request_time.total_seconds() * 1000,
        )

    def reopen_files(self) -> None:
        """Log files belong to `logging` here: nothing of gunicorn's to reopen."""

    def close_on_exec(self) -> None:
        """No file of gunicorn's own to mark."""
