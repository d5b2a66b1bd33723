"""The proxy's built-in HTTP/1.1 server, spoken to over real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slapos.proxy.httpserver import HTTPServer, Limits


def echo_app(environ: dict[str, Any], start_response: Any) -> Any:
    """/echo: the body back; /lines: the body's lines counted; /stream: no length;
    /boom: raises; /file: a file through wsgi.file_wrapper; /env: chosen environ keys."""
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("application bug")
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        body = f"{len(lines)} lines, last {lines[-1]!r}".encode() if lines else b"none"
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"first,", b"", b"second"])
    elif path == "/file":
        handle = open(environ["QUERY_STRING"], "rb")  # noqa: SIM115 - closed by the server
        size = Path(environ["QUERY_STRING"]).stat().st_size
        start_response("200 OK", [("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](handle, 4096)
    elif path.startswith("/env"):
        keys = ("PATH_INFO", "QUERY_STRING", "HTTP_X_FORWARDED_FOR", "REQUEST_METHOD")
        body = repr({key: environ.get(key) for key in keys}).encode()
    elif path == "/slow":
        time.sleep(0.5)
        body = b"slow done"
    else:
        body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body] if environ["REQUEST_METHOD"] != "HEAD" else []


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    limits = Limits(max_body=1000, timeout=2.0)
    srv = HTTPServer(echo_app, "127.0.0.1", 0, limits=limits)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.stop(grace=2.0)
    thread.join(5)
    assert not thread.is_alive()


class Client:
    """A raw connection with a buffered reader (answers may arrive together)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.reader = self.sock.makefile("rb")

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_answer(self) -> tuple[str, dict[str, str], bytes]:
        """One answer: status line, headers (lower-case names), body (length or chunked)."""
        status = self.reader.readline().decode("latin-1").rstrip("\r\n")
        if not status:
            raise ConnectionError("closed before an answer")
        headers = {}
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self.reader.readline().split(b";")[0], 16):
                body += self.reader.read(size)
                self.reader.readline()
            self.reader.readline()
            return status, headers, body
        return status, headers, self.reader.read(int(headers.get("content-length", "0")))

    def read_rest(self) -> bytes:
        return self.reader.read()

    def closed(self) -> bool:
        self.sock.settimeout(3)
        try:
            return self.reader.read(1) == b""
        except ConnectionResetError:
            return True


def connect(server: HTTPServer) -> Client:
    return Client(server.port)


def test_keep_alive_serves_many_requests_on_one_connection(server: HTTPServer) -> None:
    sock = connect(server)
    for i in range(3):
        body = f"hello {i}".encode()
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        sock.sendall(head + body)
        status, headers, answer = sock.read_answer()
        assert status == "HTTP/1.1 200 OK"
        assert answer == body
        assert "connection" not in headers
        assert headers["server"] == "slapos-proxy" and headers["date"]


def test_pipelined_requests_are_answered_in_order(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nA"
        b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nB"
    )
    assert sock.read_answer()[2] == b"A"
    assert sock.read_answer()[2] == b"B"


def test_http10_closes_unless_keep_alive_is_asked(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(b"GET /echo HTTP/1.0\r\n\r\n")
    status, headers, _ = sock.read_answer()
    assert status.endswith("200 OK") and headers["connection"] == "close"
    assert sock.closed()
    sock = connect(server)
    sock.sendall(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert sock.read_answer()[1]["connection"] == "keep-alive"
    sock.sendall(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert sock.read_answer()[0].endswith("200 OK")


def test_connection_close_is_honoured(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert sock.read_answer()[1]["connection"] == "close"
    assert sock.closed()


def test_chunked_request_body_and_readline(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /lines HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\none\n\r\n6;ext=1\r\ntwo\nth\r\n3\r\nree\r\n0\r\nTrailer: x\r\n\r\n"
    )
    assert sock.read_answer()[2] == b"3 lines, last b'three'"
    sock.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nok")
    assert sock.read_answer()[2] == b"ok"


def test_expect_100_continue(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert sock.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert sock.reader.readline() == b"\r\n"
    sock.sendall(b"12345")
    assert sock.read_answer()[2] == b"12345"


def test_unread_body_is_skipped_before_the_next_request(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(b"POST /env HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789")
    assert b"'/env'" in sock.read_answer()[2]
    sock.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert sock.read_answer()[2] == b"abc"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"POST /echo HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET /echo HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nX-A : 1\r\n\r\n", 400),
        (b"GET /echo HTTP/2.0\r\n\r\n", 505),
        (b"GET /echo\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 431),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413),
    ],
)
def test_bad_requests_are_refused_and_the_connection_closed(
    server: HTTPServer, request_bytes: bytes, status: int
) -> None:
    sock = connect(server)
    sock.sendall(request_bytes)
    line, headers, body = sock.read_answer()
    assert line.startswith(f"HTTP/1.1 {status} ")
    assert headers["connection"] == "close"
    assert body.count(b"\n") == 1  # one line, no traceback
    assert sock.closed()


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"3e9\r\n" + b"x" * 1001, 413), (b"zz\r\nabc", 400), (b"3\r\nabcX\r\n", 400)],
)
def test_bad_chunked_body_is_refused_and_the_connection_closed(
    server: HTTPServer, body: bytes, status: int
) -> None:
    sock = connect(server)
    sock.sendall(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    line, headers, _ = sock.read_answer()
    assert line.startswith(f"HTTP/1.1 {status} ") and headers["connection"] == "close"
    assert sock.closed()


def test_streamed_answer_is_chunked_for_http11_and_close_delimited_for_http10(
    server: HTTPServer,
) -> None:
    sock = connect(server)
    sock.sendall(b"GET /stream HTTP/1.1\r\n\r\n")
    _, headers, body = sock.read_answer()
    assert headers["transfer-encoding"] == "chunked" and body == b"first,second"
    sock.sendall(b"GET /echo HTTP/1.1\r\n\r\n")  # still usable
    assert sock.read_answer()[0].endswith("200 OK")
    sock = connect(server)
    sock.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
    data = sock.read_rest()
    assert data.endswith(b"\r\n\r\nfirst,second") and b"Connection: close" in data


def test_application_error_answers_500_and_the_server_goes_on(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(b"GET /boom HTTP/1.1\r\n\r\n")
    line, _, body = sock.read_answer()
    assert line == "HTTP/1.1 500 Internal Server Error"
    assert b"Traceback" not in body
    assert sock.closed()
    sock = connect(server)
    sock.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nok")
    assert sock.read_answer()[2] == b"ok"


def test_head_has_no_body(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(b"HEAD /stream HTTP/1.1\r\n\r\n")
    assert sock.reader.readline().startswith(b"HTTP/1.1 200")
    while sock.reader.readline() != b"\r\n":
        pass
    sock.sendall(b"GET /echo HTTP/1.1\r\n\r\n")
    assert sock.reader.readline() == b"HTTP/1.1 200 OK\r\n"  # no body came in between


def test_file_wrapper_is_sent_whole(server: HTTPServer, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 400
    path = tmp_path / "blob"
    path.write_bytes(payload)
    sock = connect(server)
    sock.sendall(f"GET /file?{path} HTTP/1.1\r\n\r\n".encode())
    assert sock.read_answer()[2] == payload


def test_environ_path_query_and_underscore_headers(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(
        b"GET /env%20x?a=%20 HTTP/1.1\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n"
        b"GET http://host:1/env?b HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
    )
    first = sock.read_answer()[2].decode()
    assert "'PATH_INFO': '/env x'" in first and "'QUERY_STRING': 'a=%20'" in first
    assert "'HTTP_X_FORWARDED_FOR': None" in first
    second = sock.read_answer()[2].decode()
    assert "'PATH_INFO': '/env'" in second and "'HTTP_X_FORWARDED_FOR': '1.2.3.4'" in second


def test_idle_connection_times_out(server: HTTPServer) -> None:
    sock = connect(server)
    started = time.monotonic()
    assert sock.closed()
    assert 1.5 < time.monotonic() - started < 3.5


def test_stop_closes_idle_connections_and_finishes_running_requests() -> None:
    srv = HTTPServer(echo_app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    idle, busy = connect(srv), connect(srv)
    idle.sendall(b"GET /echo HTTP/1.1\r\n\r\n")
    idle.read_answer()
    busy.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
    time.sleep(0.1)
    started = time.monotonic()
    srv.stop(grace=5.0)
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert idle.closed()
    _, headers, body = busy.read_answer()
    assert body == b"slow done" and headers["connection"] == "close"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1)


def test_ipv6_listening() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        srv = HTTPServer(echo_app, "[::1]", 0)
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        assert srv.url.startswith("http://[::1]:")
        sock = Client(srv.port, "::1")
        sock.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nv6")
        assert sock.read_answer()[2] == b"v6"
    finally:
        srv.stop()
        thread.join(5)


def test_host_names_are_resolved_and_bad_ones_fail_at_once() -> None:
    srv = HTTPServer(echo_app, "localhost", 0)
    try:
        assert srv.url.startswith(("http://127.0.0.1:", "http://[::1]:"))
    finally:
        srv.stop()
    with pytest.raises(OSError):
        HTTPServer(echo_app, "no-such-host.invalid", 0)


def test_header_in_pieces_bare_lf_lines_and_no_header_at_all(server: HTTPServer) -> None:
    sock = connect(server)
    sock.sendall(b"POST /env HTTP/1.1\r\nX-Forwarded-")
    time.sleep(0.2)  # the rest comes later: read line by line
    sock.sendall(b"For: 1.1.1.1\r\nContent-Length: 0\r\n\r\n")
    assert "'HTTP_X_FORWARDED_FOR': '1.1.1.1'" in sock.read_answer()[2].decode()
    sock.sendall(b"GET /env HTTP/1.1\nX-Forwarded-For: 2.2.2.2 \nHost: x\r\n\r\n")
    assert "'HTTP_X_FORWARDED_FOR': '2.2.2.2'" in sock.read_answer()[2].decode()
    sock.sendall(b"GET /env HTTP/1.1\r\n\r\n")
    assert "'HTTP_X_FORWARDED_FOR': None" in sock.read_answer()[2].decode()
