"""gunicorn's threaded worker (gthread), with the deadlines the proxy needs.

gunicorn parses and frames every request (it refuses what is ambiguous: both lengths,
bad chunk sizes, bare LF, control bytes, folded lines...); what this subclass changes is
who waits for a slow client, and for how long:

* the worker's event loop, not a thread, does the TLS handshake and collects each
  request head (up to `PREREAD` bytes, without blocking); a thread takes the connection
  only once its head is complete. Idle or slow sockets, plain or TLS, cost no thread: a
  thousand of them do not delay anyone else (gunicorn 27 gives each new connection a
  thread for up to 5 s, and reads heads in threads);
* deadlines, checked by the event loop about once a second: the TLS handshake must be
  done `handshake_timeout` after the connection was accepted; each request head must be
  complete `head_timeout` after it started (after the acceptance, or the handshake, for
  the first; after its first bytes on a kept-alive connection). A connection past its
  deadline is closed. A head larger than `PREREAD` is read on by a thread, under the same
  deadline (the connection is shut down, which ends the thread's read);
* once the head is in, each read of the body and each write of the answer times out
  after `read_timeout`;
* a connection the client asked to close (`Connection: close`, as upstream's library
  sends on every call), with nothing left to read, is closed by the thread that answered
  it, and the event loop is not woken for it (gunicorn hands every connection back to the
  event loop, which then lingers on it until the client has closed its side). Anything
  else (kept-alive, unread bytes, TLS) goes back to the event loop as in gunicorn;
* the heartbeat file gunicorn's arbiter watches is touched at most once a second, not on
  every turn of the event loop;
* the `Date` header's text is made once a second, not for every answer (gunicorn's
  `util.http_date`, which its responses call, is replaced in the worker's process);
* SIGINT stops as gracefully as SIGTERM, and the listening socket is closed as soon as
  the worker stops (requests in progress finish); an accept() that fails for lack of file
  descriptors or memory is retried after a pause instead of ending the worker.

It extends gunicorn 27's `ThreadWorker` through its methods and attributes (the event
loop's callbacks, its pending and kept-alive queues): hence `gunicorn >= 27, < 28` in
setup.cfg; tests/integration/test_proxy_http.py checks every behaviour above.

Also here: `ProxyLog`, gunicorn's logger interface on the standard `logging` loggers
(`slapos.proxy.server`, and `slapos.proxy.access` for one line per request).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import signal
import socket
import ssl
import time
from collections import deque
from email.utils import formatdate
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn import sock as gsock
from gunicorn import util as gutil
from gunicorn.workers.gthread import TConn, ThreadWorker

from slapos.proxy.config import ServingConfig
from slapos.proxy.wsgi import access_log, log_access
from slapos.wording import counted

log = logging.getLogger("slapos.proxy.server")

#: head bytes the event loop collects before a thread takes over (SLAP heads: < 1 KiB)
PREREAD = 16 * 1024
_NO_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_WAIT = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
#: what `ProxyWorker.handle` returns for a connection its thread has closed
_CLOSED = object()
#: seconds between two touches of the heartbeat file (the arbiter's timeout is 60 s)
HEARTBEAT = 1.0


def _nothing() -> None:
    """Queued only to wake the event loop."""


#: (whole second, its HTTP date)
_last_date: tuple[int, str] = (-1, "")


def _http_date(timestamp: float | None = None) -> str:
    """gunicorn's `util.http_date`, the text remembered for the current second."""
    global _last_date
    if timestamp is not None:
        return formatdate(timestamp, usegmt=True)
    now = time.time()
    if _last_date[0] != int(now):
        _last_date = (int(now), formatdate(now, usegmt=True))
    return _last_date[1]


class _Connection(TConn):  # type: ignore[misc]
    """A connection with the head bytes its worker's event loop has read."""

    initialized: bool
    parser: Any
    sock: Any
    timeout: float | None

    def __init__(self, worker: ProxyWorker, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(worker.cfg, sock, client, server)
        self.worker = worker
        self.accepted = time.monotonic()
        #: read by the event loop, not yet given to the parser
        self.head = bytearray()
        #: TLS: the event loop has wrapped the socket and finished the handshake
        self.handshaken = False
        #: when the head a thread is given must be complete (None: head_timeout from then)
        self.head_deadline: float | None = None
        #: the request being answered asked for the connection to be closed after it
        self.client_closes = False

    def init(self) -> None:
        if self.initialized:
            return
        if isinstance(self.sock, ssl.SSLSocket):  # wrapped by the event loop
            self.initialized = True
            self.sock.setblocking(True)
            if not self.handshaken:  # left half-done by the event loop (rare)
                self.sock.do_handshake()
                self.handshaken = True
            self.parser = http.get_parser(self.cfg, self.sock, self.client)
        else:
            super().init()
        self.give_head()

    def give_head(self) -> None:
        """Hand the bytes the event loop read to the parser (after what it holds)."""
        if self.head and self.parser is not None:
            buffer = self.parser.unreader.buf
            buffer.seek(0, 2)
            buffer.write(bytes(self.head))
            self.head.clear()


class ProxyWorker(ThreadWorker):  # type: ignore[misc]
    """See the module docstring. `self.app.serving` (a ServingConfig) gives the limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.serving: ServingConfig = self.app.serving
        #: connections whose head a thread reads (larger than PREREAD) -> deadline.
        #: Threads add and remove their own entries, the event loop removes expired ones
        #: (single dict operations: atomic, no lock needed).
        self.reading: dict[_Connection, float] = {}
        #: one entry per connection a thread has closed, not yet counted off `nr_conns`
        #: by the event loop (deque append/popleft are atomic)
        self.closed_by_threads: deque[None] = deque()
        self._heartbeat = 0.0
        gutil.http_date = _http_date

    def notify(self) -> None:
        now = time.monotonic()
        if now - self._heartbeat >= HEARTBEAT:
            self._heartbeat = now
            super().notify()

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

    # ---- the event loop: accept, handshake, collect heads ------------------------------
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
        if self.cfg.is_ssl:
            conn.timeout = conn.accepted + self.serving.handshake_timeout
            try:
                conn.sock = gsock.ssl_wrap_socket(conn.sock, self.cfg)
            except (OSError, ValueError) as exc:  # the client is already gone
                log.debug("cannot start TLS with %s: %s", client_addr, exc)
                self.nr_conns -= 1
                conn.close()
                return
        else:
            conn.timeout = conn.accepted + self.serving.head_timeout
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def on_pending_socket_readable(self, conn: _Connection, client: Any) -> None:
        """A new connection (or one between two heads) has something to read."""
        self._collect(conn, self.pending_conns)

    def on_client_socket_readable(self, conn: _Connection, client: Any) -> None:
        """A kept-alive connection has something to read: a new request, or its end."""
        self._collect(conn, self.keepalived_conns)

    def _collect(self, conn: _Connection, waiting: deque[_Connection]) -> None:
        try:
            state = self._read_head(conn)
        except (OSError, ssl.SSLError, ValueError) as exc:  # reset, bad handshake
            log.debug("connection from %s failed: %s", conn.client, exc)
            state = None
        if state is False and waiting is self.pending_conns:
            return  # keep waiting, under the same deadline
        self.poller.unregister(conn.sock)
        waiting.remove(conn)
        if state is None:  # closed by the client, or broken
            self.nr_conns -= 1
            conn.close()
        elif state:
            conn.data_ready = True
            if waiting is self.pending_conns:
                conn.head_deadline = conn.timeout
            self.enqueue_req(conn)
        else:  # a kept-alive connection started a head: it has head_timeout to finish it
            conn.timeout = time.monotonic() + self.serving.head_timeout
            self.pending_conns.append(conn)
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
            )

    def _read_head(self, conn: _Connection) -> bool | None:
        """Advance the handshake and read what has come, without blocking: True when a
        thread should take the connection, False to wait for more, None when it is over."""
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket) and not conn.handshaken:
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLWantWriteError:
                return True  # a full send buffer (rare): the thread finishes it, blocking
            conn.handshaken = True
            conn.timeout = time.monotonic() + self.serving.head_timeout
        try:
            data = sock.recv(PREREAD)
        except _WAIT:
            return False
        if not data:
            return None
        conn.head += data
        while isinstance(sock, ssl.SSLSocket) and sock.pending() and len(conn.head) < PREREAD:
            conn.head += sock.recv(PREREAD)  # already decrypted: no wait
        # complete (or a bare-LF end, which gunicorn refuses), or large
        return len(conn.head) >= PREREAD or b"\n\r\n" in conn.head or b"\n\n" in conn.head

    def murder_pending(self) -> None:
        """Close the connections past their handshake or head deadline; when stopping,
        also those that have not started a request (nothing to finish)."""
        now = time.monotonic()
        expired = [
            conn
            for conn in self.pending_conns
            if conn.timeout <= now or (not self.alive and not conn.head)
        ]
        for conn in expired:
            self.pending_conns.remove(conn)
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()
        if expired:
            log.debug("closed %s past their head deadline", counted(len(expired), "connection"))
        for conn, deadline in list(self.reading.items()):
            if deadline <= now and self.reading.pop(conn, None) is not None:
                log.debug("closing %s: request head not done in time", conn.client)
                with contextlib.suppress(OSError):  # already closed by its thread
                    # the plain socket's shutdown (an SSLSocket's would touch its TLS state)
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)

    def enqueue_req(self, conn: _Connection) -> None:
        future = self.tpool.submit(self.handle, conn)
        future.add_done_callback(partial(self._handled, conn))

    def _handled(self, conn: _Connection, future: Any) -> None:
        """A thread is done with `conn` (runs in that thread)."""
        if not future.cancelled() and future.exception() is None and future.result() is _CLOSED:
            self.closed_by_threads.append(None)
            if not self.alive or not self._accepting:
                # the event loop waits for connections to end (stopping, or at
                # max_connections): wake it to count this one off now
                self.method_queue.defer(_nothing)
            return
        self.method_queue.defer(self.finish_request, conn, future)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(timeout)
        while self.closed_by_threads:
            self.closed_by_threads.popleft()
            self.nr_conns -= 1

    # ---- threads ----------------------------------------------------------------------
    def handle(self, conn: _Connection) -> Any:
        # the head is complete, unless larger than PREREAD: then the thread reads on
        deadline, conn.head_deadline = conn.head_deadline, None
        self.reading[conn] = deadline or time.monotonic() + self.serving.head_timeout
        if conn.initialized:
            conn.give_head()
        conn.client_closes = False
        try:
            result = super().handle(conn)
        finally:
            self.reading.pop(conn, None)
        if result is False and conn.client_closes and _close_if_drained(conn):
            return _CLOSED
        return result

    def handle_request(self, req: Any, conn: _Connection) -> Any:
        self.reading.pop(conn, None)
        conn.client_closes = bool(req.should_close())
        conn.sock.settimeout(self.serving.read_timeout)
        return super().handle_request(req, conn)


def _close_if_drained(conn: _Connection) -> bool:
    """Close a plain connection with nothing left to read from it (neither buffered by the
    parser nor waiting in the kernel): the close then sends a FIN after the answer, never
    a reset that could cut it. False (nothing done) otherwise: gunicorn's lingering close
    takes it, in the event loop."""
    sock = conn.sock
    if type(sock) is not socket.socket or conn.parser is None:
        return False
    if conn.parser.unreader.buf.getvalue():
        return False
    try:
        sock.setblocking(False)  # a socket with a timeout would wait for something to read
        unread = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        unread = b""
    except OSError:  # reset by the client: nothing to protect
        unread = b""
    if unread:
        return False
    with contextlib.suppress(OSError):
        sock.close()
    return True


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
        log_access(
            environ.get("REMOTE_ADDR", "-"),
            getattr(req, "method", "-"),
            getattr(req, "path", "-"),
            getattr(req, "query", ""),
            getattr(resp, "status_code", None) or str(getattr(resp, "status", "-"))[:3],
            getattr(resp, "sent", 0) or 0,
            request_time.total_seconds(),
        )

    def reopen_files(self) -> None:
        """Log files belong to `logging` here: nothing of gunicorn's to reopen."""

    def close_on_exec(self) -> None:
        """No file of gunicorn's own to mark."""
