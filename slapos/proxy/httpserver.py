"""The proxy's HTTP/1.1 server: WSGI over blocking sockets, one thread per connection.

Why not waitress (still available with `[slapproxy] server = waitress`): SLAP clients
make many short calls one after the other on one keep-alive connection. waitress reads
each request in its event-loop thread and hands it to a worker thread, then wakes the
loop again to read the next one; cheroot and granian do the same kind of hand-off. On
this workload that machinery cost ~225 us of CPU per call (575 us in all, the proxy's
own work included, against ~350 us here), about as much as the proxy's own work. Here
the connection's thread reads a request, runs the application and writes the answer
itself, so a call costs two system calls and no thread switch.

What it does, on purpose:

* HTTP/1.0 and 1.1, keep-alive, requests answered in order, `Expect: 100-continue`,
  chunked request bodies (`wsgi.input_terminated`), responses streamed with
  `Transfer-Encoding: chunked` when the application gives no Content-Length, HEAD,
  `wsgi.file_wrapper` sent with `sendfile()` (the built-in shacache).
* Limits: request line and each header line 8 KiB, 100 header fields, 64 KiB of header,
  the body size (413), a timeout on each read and write and between requests, at most
  `max_connections` connections at once (the next ones wait in the listen backlog). A
  slow client holds only its own thread.
* Strict framing, against request smuggling: Content-Length with Transfer-Encoding,
  differing Content-Length values, a non-numeric length, a transfer coding other than
  chunked, obsolete line folding or space before a header's colon: 400 (501 for an
  unknown coding) and the connection is closed. Header names containing `_` are dropped,
  so `X_Forwarded_For` cannot pose as `X-Forwarded-For`.
* TLS: with an `ssl.SSLContext`, each accepted socket is wrapped in its own thread (a
  slow handshake stalls nobody); the client certificate's common name is put in the
  environ under `slapos.peer_common_name`. Keep-alive works over TLS too.
* Stop: `stop()` closes the listening socket, closes idle connections, and gives
  requests in progress `grace` seconds to finish.

Imports only the standard library. Must not import slapos.cli.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import IO, Any
from urllib.parse import unquote_to_bytes

log = logging.getLogger(__name__)

PEER_KEY = "slapos.peer_common_name"
MAX_LINE = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
#: unread request body a keep-alive connection still swallows before the next request
MAX_DRAIN = 64 * 1024
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_REASONS = {
    400: "Bad Request", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 505: "HTTP Version Not Supported",
}  # fmt: skip

StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Limits:
    max_body: int = 64 * 1024 * 1024
    #: for each read or write, and between two requests of a keep-alive connection (one
    #: value: setting a socket's timeout is a system call, twice per request otherwise)
    timeout: float = 120.0
    handshake_timeout: float = 15.0
    max_connections: int = 1000


class _Refused(Exception):
    """The request cannot be served: answer `status` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Disconnect(Exception):
    """The client went away or broke the protocol mid-way: close without answering."""


class BodyError(ValueError):
    """Raised by `wsgi.input`: the request body is malformed, truncated or too large.

    The connection is closed after the answer; an application that lets it through gets
    `status` answered with the one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# ---- request bodies ------------------------------------------------------------------


class Body:
    """`wsgi.input`: the request body, read from the connection as the application asks."""

    def __init__(
        self,
        reader: IO[bytes],
        length: int | None,
        max_body: int,
        on_first_read: Callable[[], None] | None = None,
    ) -> None:
        self._reader = reader
        self._chunked = length is None
        #: bytes left in the body (fixed length) or in the current chunk (chunked)
        self._left = length or 0
        self._done = length == 0
        self._max = max_body
        self._total = 0
        self._on_first_read = on_first_read
        #: the body could not be read to its end: the connection cannot carry another request
        self.broken = False

    def _fail(self, status: int, reason: str) -> BodyError:
        self.broken = True
        return BodyError(status, reason)

    def _start(self) -> None:
        if self._on_first_read is not None:
            callback, self._on_first_read = self._on_first_read, None
            callback()

    def _next_chunk(self) -> None:
        line = self._reader.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise self._fail(400, "request body truncated (chunk size line)")
        size_text = line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            raise self._fail(400, f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(MAX_HEADERS + 1):  # trailer fields, ignored
                trailer = self._reader.readline(MAX_LINE + 1)
                if trailer in (b"\r\n", b"\n"):
                    self._done = True
                    return
                if not trailer.endswith(b"\n"):
                    raise self._fail(400, "request body truncated (trailer)")
            raise self._fail(400, "too many trailer fields")
        self._total += size
        if self._total > self._max:
            raise self._fail(413, f"request body larger than {self._max} bytes")
        self._left = size

    def _end_chunk(self) -> None:
        if self._reader.readline(3) not in (b"\r\n", b"\n"):
            raise self._fail(400, "chunk not followed by CRLF")

    def read(self, size: int | None = -1) -> bytes:
        if self.broken:
            raise BodyError(400, "request body unreadable")
        try:
            return self._read(size)
        except OSError as exc:  # timeout, reset
            raise self._fail(400, f"request body not received: {exc}") from exc

    def _read(self, size: int | None) -> bytes:
        self._start()
        if size is None or size < 0:
            parts: list[bytes] = []
            while True:
                part = self._read(1024 * 1024)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        if self._done or size == 0:
            return b""
        if self._chunked and self._left == 0:
            self._next_chunk()
            if self._done:
                return b""
        data = self._reader.read(min(size, self._left))
        if not data:
            raise self._fail(400, "request body truncated")
        self._left -= len(data)
        if self._left == 0:
            if self._chunked:
                self._end_chunk()
            else:
                self._done = True
        return data

    def readline(self, size: int | None = -1) -> bytes:
        try:
            return self._readline(size)
        except OSError as exc:  # timeout, reset
            raise self._fail(400, f"request body not received: {exc}") from exc

    def _readline(self, size: int | None) -> bytes:
        line = bytearray()
        limit = size if size is not None and size >= 0 else sys.maxsize
        while len(line) < limit:
            self._start()
            if self._done:
                break
            if self._chunked and self._left == 0:
                self._next_chunk()
                continue
            peeked = self._reader.peek(1)[: min(self._left, limit - len(line))]  # type: ignore[attr-defined]
            cut = peeked.find(b"\n")
            piece = self._read(cut + 1 if cut >= 0 else max(1, len(peeked)))
            line += piece
            if piece.endswith(b"\n"):
                break
        return bytes(line)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self, limit: int) -> bool:
        """Swallow what the application left unread; False if more than `limit` bytes."""
        if self._on_first_read is not None:  # 100-continue never sent: nothing will come
            return self._done
        try:
            while not self._done and limit > 0:
                data = self.read(min(limit, 65536))
                limit -= len(data)
        except BodyError:
            return False
        return self._done and not self.broken


class FileWrapper:
    """`wsgi.file_wrapper`: sent with sendfile() when the answer has a Content-Length."""

    def __init__(self, handle: IO[bytes], block_size: int = 1024 * 1024) -> None:
        self.handle = handle
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        while True:
            block = self.handle.read(self.block_size)
            if not block:
                return
            yield block

    def close(self) -> None:
        self.handle.close()


# ---- the server ----------------------------------------------------------------------


class HTTPServer:
    """Serve `app` on (host, port) until stop(); see the module docstring."""

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        server_name: str = "slapos-proxy",
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.limits = limits or Limits()
        self.server_header = server_name
        host = host.strip().strip("[]")
        # a name may resolve to IPv4 or IPv6: listen on the first address it gives
        family, _, _, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            self.socket.bind(address)
            self.socket.listen(1024)
            self.socket.settimeout(1.0)  # accept() looks at _stopping at least each second
        except BaseException:
            self.socket.close()
            raise
        self.host, self.port = self.socket.getsockname()[:2]
        self.scheme = "https" if ssl_context is not None else "http"
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, bool] = {}  # socket -> idle
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._environ: dict[str, Any] = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            "SERVER_SOFTWARE": self.server_header,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.scheme,
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
        }

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{shown}:{self.port}"

    def serve_forever(self) -> None:
        """Accept connections until stop() (or an exception from a signal handler)."""
        while not self._stopping:
            self._slots.acquire()
            try:
                sock, address = self.socket.accept()
            except TimeoutError:
                self._slots.release()
                continue
            except OSError as exc:
                self._slots.release()
                if self._stopping or self.socket.fileno() < 0:
                    return
                log.warning("accept failed: %s", exc)  # EMFILE, ENOBUFS: breathe, retry
                time.sleep(0.1)
                continue
            except BaseException:
                self._slots.release()
                raise
            thread = threading.Thread(
                target=self._serve_connection, args=(sock, address), daemon=True
            )
            with self._lock:
                self._threads.add(thread)
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": out of memory or limits
                log.warning("cannot serve %s: %s", address[0], exc)
                with self._lock:
                    self._threads.discard(thread)
                _close(sock)
                self._slots.release()

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, let running requests finish."""
        self._stopping = True
        _shutdown(self.socket)  # wakes a thread blocked in accept() (Linux)
        self.socket.close()
        with self._lock:
            idle = [sock for sock, is_idle in self._connections.items() if is_idle]
        for sock in idle:
            _shutdown(sock)
        deadline = time.monotonic() + grace
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._connections)
        if left:
            log.warning("%d connection(s) still busy after %.0f s: closed", len(left), grace)
        for sock in left:
            _shutdown(sock)

    # ---- one connection ----------------------------------------------------------------
    def _serve_connection(self, sock: socket.socket, address: Any) -> None:
        peer_name: str | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock.settimeout(self.limits.handshake_timeout)
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    log.info("TLS handshake with %s failed: %s", address[0], exc)
                    _close(sock)
                    return
                peer_name = _common_name(sock.getpeercert())  # type: ignore[attr-defined]
            sock.settimeout(self.limits.timeout)
            with self._lock:  # listed once here; _requests then only flips its idle flag
                self._connections[sock] = True
            reader: IO[bytes] = sock.makefile("rb", buffering=65536)  # type: ignore[assignment]
            try:
                self._requests(sock, reader, address, peer_name)
            finally:
                reader.close()
        except Exception:  # a bug here must not kill the thread silently
            log.exception("connection from %s failed", address[0])
        finally:
            with self._lock:
                self._connections.pop(sock, None)
                self._threads.discard(threading.current_thread())
            _close(sock)
            self._slots.release()

    def _requests(
        self, sock: socket.socket, reader: IO[bytes], address: Any, peer_name: str | None
    ) -> None:
        blank_lines = 0
        connections = self._connections
        while not self._stopping:
            # the connection is listed: a plain store of its idle flag is atomic
            connections[sock] = True
            if self._stopping:
                return
            try:
                first = reader.readline(MAX_LINE + 1)
            except (OSError, ValueError):  # timeout, reset, closed by stop()
                return
            connections[sock] = False
            if not first:
                return
            if first in (b"\r\n", b"\n") and blank_lines < 2:  # RFC 9112 2.2: tolerate
                blank_lines += 1
                continue
            blank_lines = 0
            try:
                keep = self._one_request(sock, reader, first, address, peer_name)
            except _Refused as refused:
                self._refuse(sock, refused)
                return
            except (_Disconnect, OSError) as exc:
                log.debug("connection from %s dropped: %s", address[0], exc)
                return
            if not keep:
                return

    def _one_request(
        self,
        sock: socket.socket,
        reader: IO[bytes],
        first: bytes,
        address: Any,
        peer_name: str | None,
    ) -> bool:
        """Serve one request; True if the connection can carry another."""
        method, target, version, headers = _read_head(first, reader)
        http11 = version == "HTTP/1.1"
        connection = headers.get("HTTP_CONNECTION", "").lower()
        keep_alive = "close" not in connection if http11 else "keep-alive" in connection
        length = _body_length(headers, http11, self.limits.max_body)
        continue_pending = (
            http11 and length != 0 and headers.get("HTTP_EXPECT", "").lower() == "100-continue"
        )

        def send_continue() -> None:
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        on_first_read = send_continue if continue_pending else None
        body = Body(reader, length, self.limits.max_body, on_first_read)
        path, _, query = target.partition("?")
        if "://" in path:  # absolute form (a client speaking to a proxy): keep the path
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        environ = self._environ.copy()  # the keys that do not change from call to call
        environ["REQUEST_METHOD"] = method
        environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
        environ["QUERY_STRING"] = query
        environ["SERVER_PROTOCOL"] = version
        environ["REMOTE_ADDR"] = address[0]
        environ["REMOTE_PORT"] = str(address[1])
        environ["wsgi.input"] = body
        environ.update(headers)
        if peer_name is not None:
            environ[PEER_KEY] = peer_name
        response = _Response(self, sock, http11, keep_alive, method == "HEAD")
        try:
            result = self.app(environ, response.start_response)
        except BodyError as exc:
            if response.sent_head:
                return False
            raise _Refused(exc.status, str(exc)) from exc
        except Exception:
            log.exception("application error on %s %s", method, path)
            return response.fail()
        try:
            response.send_all(result)
        except (_Disconnect, OSError):
            raise
        except Exception:
            log.exception("application error while answering %s %s", method, path)
            return response.fail()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not response.keep_alive or self._stopping or body.broken:
            return False
        return body.drain(MAX_DRAIN)

    def _refuse(self, sock: socket.socket, refused: _Refused) -> None:
        text = f"{refused.reason}\n".encode()
        head = (
            f"HTTP/1.1 {refused.status} {_REASONS.get(refused.status, 'Error')}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(text)}\r\n"
            f"Connection: close\r\nServer: {self.server_header}\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            sock.sendall(head.encode("latin-1") + text)


def _read_head(first: bytes, reader: IO[bytes]) -> tuple[str, str, str, dict[str, str]]:
    """Request line and header fields -> (method, target, version, CGI-style headers)."""
    if len(first) > MAX_LINE or not first.endswith(b"\n"):
        raise _Refused(400 if first.endswith(b"\n") else 431, "request line too long")
    parts = first.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _Refused(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise _Refused(400, "malformed method")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/"):
            raise _Refused(505, f"unsupported version {version.decode('latin-1')[:20]}")
        raise _Refused(400, "malformed request line")
    headers = _read_fields(reader)
    return method.decode("latin-1"), target.decode("latin-1"), version.decode("latin-1"), headers


#: header name -> environ key ("" for names dropped), for names seen before
_KEYS: dict[bytes, str] = {}
_MAX_KEYS = 1024


def _environ_key(name: bytes) -> str:
    """`Content-Type` -> CONTENT_TYPE, `X-Forwarded-For` -> HTTP_X_FORWARDED_FOR."""
    if b"_" in name:
        key = ""
    else:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
    if len(_KEYS) < _MAX_KEYS:  # bounded: a client inventing names fills it once
        _KEYS[name] = key
    return key


def _read_fields(reader: IO[bytes]) -> dict[str, str]:
    """Header fields as WSGI keys (HTTP_X_Y, CONTENT_TYPE, CONTENT_LENGTH)."""
    headers: dict[str, str] = {}
    # Usually the whole header is already buffered: take it in one read when it is there,
    # complete and made of CRLF lines only; otherwise line by line (same checks).
    buffered = reader.peek(MAX_HEADER_BYTES)  # type: ignore[attr-defined]
    if buffered[:2] == b"\r\n":
        reader.read(2)
        return headers
    end = buffered.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES)
    if end >= 0:
        block = buffered[:end]
        lines = block.split(b"\r\n")
        if block.count(b"\n") == len(lines) - 1 and len(lines) <= MAX_HEADERS:
            reader.read(end + 4)
            for line in lines:
                if len(line) > MAX_LINE:
                    raise _Refused(431, "header line too long")
                _add_field(line, headers)
            return headers
    size = 0
    for _ in range(MAX_HEADERS + 1):
        line = reader.readline(MAX_LINE + 1)
        size += len(line)
        if not line.endswith(b"\n"):
            if not line:
                raise _Disconnect("connection closed inside the header")
            raise _Refused(431, "header line too long")
        if line in (b"\r\n", b"\n"):
            return headers
        if size > MAX_HEADER_BYTES:
            raise _Refused(431, "header too large")
        _add_field(line.rstrip(b"\r\n"), headers)
    raise _Refused(431, f"more than {MAX_HEADERS} header fields")


#: header line -> (environ key, value), for lines seen before: clients repeat the same
#: lines call after call (Host, Content-Type, Accept-Encoding, a few Content-Lengths)
_LINES: dict[bytes, tuple[str, str]] = {}
_MAX_LINES = 4096
_MAX_CACHED_LINE = 256


def _add_field(line: bytes, headers: dict[str, str]) -> None:
    """One `Name: value` line (without its line end) into the WSGI headers."""
    field = _LINES.get(line)
    if field is None:
        name, colon, value = line.partition(b":")
        key = _KEYS.get(name)
        if key is None:
            if line[:1] in (b" ", b"\t"):
                raise _Refused(400, "obsolete header line folding")
            if not colon or not _TOKEN.fullmatch(name):
                raise _Refused(400, "malformed header field")
            key = _environ_key(name)
        field = (key, value.strip(b" \t\r").decode("latin-1"))
        if len(line) <= _MAX_CACHED_LINE:
            if len(_LINES) >= _MAX_LINES:  # bounded: a client inventing lines fills it
                _LINES.clear()
            _LINES[line] = field
    key, text = field
    if not key:  # a name with "_": dropped
        return
    if key not in headers:
        headers[key] = text
    elif key == "CONTENT_LENGTH":
        if headers[key] != text:
            raise _Refused(400, "conflicting Content-Length values")
    else:
        headers[key] += "," + text


def _body_length(headers: dict[str, str], http11: bool, max_body: int) -> int | None:
    """The request body length; None for chunked."""
    coding = headers.get("HTTP_TRANSFER_ENCODING")
    length = headers.get("CONTENT_LENGTH")
    if coding is not None:
        if length is not None:
            raise _Refused(400, "both Transfer-Encoding and Content-Length")
        if coding.strip().lower() != "chunked" or not http11:
            raise _Refused(501, f"unsupported transfer coding {coding[:40]!r}")
        return None
    if length is None:
        return 0
    if not length.isdigit() or not length.isascii():
        raise _Refused(400, "bad Content-Length")
    size = int(length)
    if size > max_body:
        raise _Refused(413, f"request body larger than {max_body} bytes")
    return size


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class _Response:
    """Framing and writing of one answer (start_response, write, the result iterable)."""

    def __init__(
        self, server: HTTPServer, sock: socket.socket, http11: bool, keep_alive: bool, head: bool
    ) -> None:
        self.server = server
        self.sock = sock
        self.http11 = http11
        self.keep_alive = keep_alive
        self.head = head
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent_head = False
        self.chunked = False
        self.length: int | None = None
        self.sent = 0

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.sent_head:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        if len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError(f"bad WSGI status {status!r}")
        for name, value in headers:
            if "\n" in name or "\r" in name or "\n" in value or "\r" in value:
                raise ValueError(f"header {name!r} contains a line break")
        self.status, self.headers = status, list(headers)
        return self.write

    def _head_bytes(self) -> bytes:
        assert self.status is not None
        code = int(self.status[:3])
        names = set()
        lines = [f"HTTP/1.1 {self.status}\r\n"]
        for name, value in self.headers:
            lower = name.lower()
            names.add(lower)
            if lower == "content-length":
                self.length = int(value) if value.isdigit() else None
            elif lower == "connection" and "close" in value.lower():
                self.keep_alive = False
            lines.append(f"{name}: {value}\r\n")
        bodyless = self.head or code in (204, 304) or code < 200
        if self.length is None and not bodyless:
            if self.http11 and "transfer-encoding" not in names:
                self.chunked = True
                lines.append("Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False
        if self.server._stopping:
            self.keep_alive = False
        if "date" not in names:
            lines.append(f"Date: {_http_date()}\r\n")
        if "server" not in names:
            lines.append(f"Server: {self.server.server_header}\r\n")
        if not self.keep_alive:
            lines.append("Connection: close\r\n")
        elif not self.http11:
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        self.sent_head = True
        return "".join(lines).encode("latin-1")

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        head = b"" if self.sent_head else self._head_bytes()
        if self.head or not data:
            if head:
                self.sock.sendall(head)
            return
        if self.length is not None and self.sent + len(data) > self.length:
            data = data[: self.length - self.sent]  # never more than announced
            self.keep_alive = False
        self.sent += len(data)
        if self.chunked:
            self.sock.sendall(head + b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            self.sock.sendall(head + data)

    def send_all(self, result: Iterable[bytes]) -> None:
        if isinstance(result, FileWrapper) and self._sendfile(result):
            return
        for data in result:
            if data:
                self.write(data)
        if self.status is None:
            raise AssertionError("the application returned without calling start_response()")
        if not self.sent_head:
            self.sock.sendall(self._head_bytes())
        if self.chunked:
            self.sock.sendall(b"0\r\n\r\n")
        elif self.length is not None and self.sent < self.length and not self.head:
            self.keep_alive = False  # the client waits for bytes that will never come
            raise _Disconnect(f"application sent {self.sent} of {self.length} bytes")

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        if self.status is None or self.sent_head:
            return False
        head = self._head_bytes()
        if self.length is None or self.chunked or self.head:
            self.sock.sendall(head)
            if not self.head:
                for data in wrapper:
                    self.write(data)
            if self.chunked:
                self.sock.sendall(b"0\r\n\r\n")
            return True
        self.sock.sendall(head)
        try:
            offset = wrapper.handle.tell()
        except (OSError, AttributeError):
            offset = 0
        sent = self.sock.sendfile(wrapper.handle, offset, self.length)
        self.sent = sent
        if sent < self.length:
            raise _Disconnect(f"file ended after {sent} of {self.length} bytes")
        return True

    def fail(self) -> bool:
        """The application failed: a 500 if nothing was sent yet; the connection closes."""
        if not self.sent_head:
            text = b"internal error, see the proxy log\n"
            self.sock.sendall(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8"
                b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(text), text)
            )
        return False


def _common_name(certificate: dict[str, Any] | None) -> str | None:
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
