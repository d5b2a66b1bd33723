"""The slap library's HTTP transport (http.client underneath) against in-thread servers:
a well-behaved HTTP/1.1 one, and raw sockets that write scripted (misbehaving) answers."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from slapos.slap import transport
from slapos.slap.session import USER_AGENT, MasterSession
from tests.fixtures.common import free_port, wait_for


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server.seen.append((self.command, self.path, body, self.client_address[1]))
        if self.path.startswith("/see-other"):
            self._answer(303, b"", Location="/target")
        elif self.path.startswith("/temporary"):
            self._answer(307, b"", Location="/target")
        elif self.path.startswith("/slow"):
            time.sleep(0.6)
            # The client timed out and left: that is the point of this path.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer(200, b"late")
        elif self.path.startswith("/close"):
            self._answer(200, b"bye", Connection="close")
            self.close_connection = True
        else:
            self._answer(200, f"{self.command} {self.path}".encode())

    do_GET = do_POST = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    seen: list[tuple[str, str, bytes, int]]


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_keep_alive_reuses_one_connection(server):
    client = transport.HttpClient(timeout=5)
    for i in range(3):
        answer = client.request("POST", url(server, f"/x{i}"), b"a=1", {})
        assert answer.status_code == 200
        assert answer.text == f"POST /x{i}"
    assert [body for _, _, body, _ in server.seen] == [b"a=1"] * 3
    assert len({port for *_, port in server.seen}) == 1
    client.close()


def test_a_connection_closed_by_the_server_is_not_reused(server):
    client = transport.HttpClient(timeout=5)
    assert client.request("GET", url(server, "/close"), None, {}).content == b"bye"
    assert client.request("GET", url(server, "/after"), None, {}).content == b"GET /after"
    assert len({port for *_, port in server.seen}) == 2


def test_redirects_follow_requests_rules(server):
    client = transport.HttpClient(timeout=5)
    answer = client.request("POST", url(server, "/see-other"), b"a=1", {})
    assert answer.text == "GET /target"
    answer = client.request("POST", url(server, "/temporary"), b"a=1", {})
    assert answer.text == "POST /target"
    assert server.seen[-1][2] == b"a=1"
    answer = client.request("GET", url(server, "/see-other"), None, {}, allow_redirects=False)
    assert answer.status_code == 303


def test_failures_are_transport_errors(server):
    client = transport.HttpClient(timeout=0.3)
    with pytest.raises(transport.TimedOut):
        client.request("GET", url(server, "/slow"), None, {})
    with pytest.raises(transport.ConnectFailed):
        client.request("GET", f"http://127.0.0.1:{free_port()}/", None, {})
    with pytest.raises(transport.BadURL):
        client.request("GET", "ftp://127.0.0.1/", None, {})


def test_params_and_form_encoding(server):
    session = MasterSession(url(server, "/"), timeout=5)
    session.get("getComputerStatus", {"computer_id": "C 1", "skip": None})
    assert server.seen[-1][1] == "/getComputerStatus?computer_id=C+1"
    session.post("supplySupply", {"url": "u&v", "state": None})
    assert server.seen[-1][2] == b"url=u%26v&state=None"


def test_requests_session_for_upstream_code():
    tls = transport.TLSSettings(cert_file="c.pem", key_file="k.pem", ca_file="ca.pem")
    session = MasterSession("https://127.0.0.1:1/", tls=tls)
    assert session.session.verify == "ca.pem"
    assert session.session.cert == ("c.pem", "k.pem")
    assert session.session.trust_env is False
    assert MasterSession("https://127.0.0.1:1/").session.verify is True
    unverified = transport.TLSSettings(verify=False)
    assert MasterSession("https://127.0.0.1:1/", tls=unverified).session.verify is False


# -- the answer reader, against a raw socket server that writes scripted bytes ---------------


class RawServer:
    """Reads requests; answers each with the next scripted bytes (None: close, say nothing).

    `close_after` closes the connection once that answer is written; `pieces` writes each
    answer one byte at a time.
    """

    def __init__(self, answers: list[bytes | None], close_after: bool = False) -> None:
        self.answers = list(answers)
        self.close_after = close_after
        self.pieces = False
        self.requests: list[tuple[int, bytes]] = []  # (connection number, raw request)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.closed = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(sock, self.connections), daemon=True).start()

    def _talk(self, sock: socket.socket, number: int) -> None:
        try:
            with sock, contextlib.suppress(OSError):
                self._serve(sock, number)
        finally:
            self.closed += 1

    def _serve(self, sock: socket.socket, number: int) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(data) < length:
                data += sock.recv(65536)
            self.requests.append((number, head + b"\r\n\r\n" + data[:length]))
            data = data[length:]
            answer = self.answers.pop(0) if self.answers else None
            if answer is None:
                return
            if self.pieces:
                for byte in range(len(answer)):
                    sock.sendall(answer[byte : byte + 1])
            else:
                sock.sendall(answer)
            if self.close_after:
                return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(answers: list[bytes | None], close_after: bool = False) -> RawServer:
        servers.append(RawServer(answers, close_after))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_request_bytes_are_those_http_client_sent(raw):
    server = raw([OK, OK, OK])
    session = MasterSession(server.url + "/sub", timeout=5)
    session.post("supplySupply", {"url": "u&v é", "state": None}, partition=("C", "p0"))
    session.get("getComputerStatus", {"computer_id": "C 1"})
    session.request("HEAD", session.url_for("h"))
    port = server.url.rpartition(":")[2]
    assert [request for _, request in server.requests] == [
        b"POST /sub/supplySupply HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n"
        b"Accept-Encoding: identity\r\nContent-Length: 27\r\nAccept: */*\r\n"
        b"User-Agent: " + USER_AGENT.encode() + b"\r\n"
        b"Authorization: X-SlapPartition computer_id=C, computer_partition_id=p0\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\nurl=u%26v+%C3%A9&state=None",
        b"GET /sub/getComputerStatus?computer_id=C+1 HTTP/1.1\r\n"
        b"Host: 127.0.0.1:" + port.encode() + b"\r\nAccept-Encoding: identity\r\nAccept: */*\r\n"
        b"User-Agent: " + USER_AGENT.encode() + b"\r\n\r\n",
        b"HEAD /sub/h HTTP/1.1\r\n"
        b"Host: 127.0.0.1:" + port.encode() + b"\r\nAccept-Encoding: identity\r\nAccept: */*\r\n"
        b"User-Agent: " + USER_AGENT.encode() + b"\r\n\r\n",
    ]
    assert server.connections == 1
    session.close()


def test_header_injection_and_bad_urls_are_refused(raw):
    server = raw([])
    client = transport.HttpClient(timeout=5)
    with pytest.raises(transport.BadURL, match="Invalid header value"):
        client.request("GET", server.url + "/", None, {"X-A": "1\r\nX-B: 2"})
    with pytest.raises(transport.BadURL):
        client.request("GET", server.url + "/a b", None, {})
    with pytest.raises(transport.BadURL):
        client.request("GET", server.url + "/é", None, {})
    assert server.requests == []


def test_chunked_answer_and_reuse(raw):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    server = raw([chunked, OK])
    client = transport.HttpClient(timeout=5)
    assert client.request("GET", server.url + "/", None, {}).content == b"hello world"
    assert client.request("GET", server.url + "/", None, {}).content == b"ok"
    assert server.connections == 1


def test_answer_written_byte_by_byte(raw):
    server = raw(
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        ]
    )
    server.pieces = True
    client = transport.HttpClient(timeout=5)
    assert client.request("GET", server.url + "/", None, {}).content == b"abc"
    assert client.request("GET", server.url + "/", None, {}).content == b"hello"


def test_interim_answers(raw):
    """100 Continue is skipped; other interim answers (no master sends them) are refused."""
    server = raw(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nX-Id: 7\r\n\r\ndone",
            b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n" + OK,
            OK,
        ]
    )
    client = transport.HttpClient(timeout=5)
    answer = client.request("POST", server.url + "/", b"a=1", {})
    assert (answer.status_code, answer.content, answer.headers.get("x-id")) == (201, b"done", "7")
    with pytest.raises(transport.BadAnswer, match="interim answer HTTP 103"):
        client.request("POST", server.url + "/", b"a=1", {})
    assert client.request("GET", server.url + "/", None, {}).content == b"ok"
    assert server.connections == 2


def test_answer_delimited_by_close(raw):
    server = raw([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", OK])
    server.close_after = True
    client = transport.HttpClient(timeout=5)
    assert client.request("GET", server.url + "/", None, {}).content == b"all of it"
    assert client.request("GET", server.url + "/", None, {}).content == b"ok"
    assert server.connections == 2


def test_an_idle_connection_the_server_closed_is_not_reused(raw):
    server = raw([OK, OK], close_after=True)  # keep-alive answers, then closes anyway
    client = transport.HttpClient(timeout=5)
    assert client.request("POST", server.url + "/", b"a=1", {}).content == b"ok"
    wait_for(lambda: server.closed == 1, timeout=5)
    assert client.request("POST", server.url + "/", b"a=2", {}).content == b"ok"
    assert server.connections == 2


def test_no_body_after_head_204_304(raw):
    server = raw(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            OK,
        ]
    )
    client = transport.HttpClient(timeout=5)
    head = client.request("HEAD", server.url + "/", None, {})
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "100")
    assert client.request("GET", server.url + "/", None, {}).status_code == 204
    assert client.request("GET", server.url + "/", None, {}).status_code == 304
    assert client.request("GET", server.url + "/", None, {}).content == b"ok"
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nconnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", True),  # bare LF line ends
    ],
)
def test_keep_alive_decision(raw, answer, kept):
    server = raw([answer, OK])
    client = transport.HttpClient(timeout=5)
    assert client.request("GET", server.url + "/", None, {}).content == b"ok"
    assert client.request("GET", server.url + "/", None, {}).content == b"ok"
    assert server.connections == (1 if kept else 2)


@pytest.mark.parametrize(
    "answer",
    [
        None,  # closed without a word
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    ],
)
def test_truncated_or_garbled_answers_are_connect_failures(raw, answer):
    server = raw([answer], close_after=True)
    client = transport.HttpClient(timeout=5)
    with pytest.raises(transport.ConnectFailed, match="connection aborted"):
        client.request("POST", server.url + "/", b"a=1", {})


def test_no_answer_in_time_is_timed_out():
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        client = transport.HttpClient(timeout=0.2)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(transport.TimedOut):
            client.request("GET", url, None, {})
    finally:
        listener.close()


def test_a_server_that_stops_reading_times_the_send_out():
    """The write side has its timeout too: a body the server never reads (here 64 MiB,
    more than the socket buffers hold) fails after about the timeout, not never."""
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    try:
        client = transport.HttpClient(timeout=0.3)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        started = time.monotonic()
        with pytest.raises(transport.TimedOut, match="timed out"):
            client.request("POST", url, b"x" * (64 * 1024 * 1024), {})
        assert time.monotonic() - started < 5
    finally:
        listener.close()


def test_big_body_and_headers(raw):
    body = bytes(range(256)) * 8192  # 2 MiB
    server = raw(
        [
            b'HTTP/1.1 200 OK\r\nContent-Type: text/plain; Charset="ISO-8859-1"\r\n'
            b"Set-Cookie: a=1\r\nset-cookie: b=2\r\nX-Folded: one\r\n two\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=no-such\r\n"
            b"Content-Length: 2\r\n\r\n\xc3\xa9",
        ]
    )
    client = transport.HttpClient(timeout=5)
    answer = client.request("GET", server.url + "/", None, {})
    assert answer.content == body
    assert answer.headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert answer.headers["x-folded"].split() == ["one", "two"]
    assert answer.headers.get_content_charset() == "iso-8859-1"
    assert answer.text == body.decode("latin-1")
    assert "set-cookie" in answer.headers and "Nope" not in answer.headers
    assert next(iter(answer.headers)) == "Content-Type"
    assert client.request("GET", server.url + "/", None, {}).text == "é"
    assert server.connections == 1


# -- form encoding -----------------------------------------------------------------------------


def test_urlencode_is_urllib_urlencode():
    rng = random.Random(4)
    alphabet = [chr(i) for i in range(0x180)] + list("é€𝄞中 +&=%/?#~_.-")
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert transport.quote_plus(text) == urllib.parse.quote_plus(text)
        form = {text: text[::-1], "n": rng.randint(-5, 5), "none": None, "b": text.encode()}
        assert transport.urlencode(form) == urllib.parse.urlencode(form)
        pairs: list[tuple[Any, Any]] = [
            ("l", [text, 1, b"x y"]),
            (text, None),
            ("t", (text,)),
            (b"b y", "v"),
            ("i", 3),
        ]
        assert transport.urlencode(pairs, doseq=True) == urllib.parse.urlencode(pairs, doseq=True)
        assert transport.urlencode(pairs) == urllib.parse.urlencode(pairs)
    with pytest.raises(UnicodeEncodeError):
        transport.quote_plus("\ud800")
    with pytest.raises(TypeError):
        transport.urlencode(["ab"])  # type: ignore[list-item]


# -- answers the client refuses: limits against a misbehaving server ---------------------------


def _traced_peak(call: Callable[[], object]) -> int:
    """Peak bytes Python allocated while `call` ran (its exception swallowed)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with contextlib.suppress(transport.TransportError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_claimed_length_is_never_allocated_up_front(raw):
    """Content-Length 1.5e9 and 3 bytes sent: the client waits for the rest piece by piece
    (even with a limit above the claim) and reports the cut-short answer."""
    server = raw([b"HTTP/1.1 200 OK\r\nContent-Length: 1500000000\r\n\r\nabc"], close_after=True)
    client = transport.HttpClient(timeout=5, max_answer=2 * 1024**3)
    with pytest.raises(transport.ConnectFailed, match="after 3 of 1500000000 bytes"):
        client.request("GET", server.url + "/", None, {})
    server = raw([b"HTTP/1.1 200 OK\r\nContent-Length: 1500000000\r\n\r\nabc"], close_after=True)
    peak = _traced_peak(lambda: client.request("GET", server.url + "/", None, {}))
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"Content-Length: 100000000000", "answer of 100000000000 bytes refused: larger than"),
        (b"Content-Length: 1e11", "invalid Content-Length '1e11'"),
        (b"Content-Length: -3", "invalid Content-Length '-3'"),
        (b"Content-Length: 3\r\nContent-Length: 30", "differing Content-Length fields (3, 30)"),
    ],
)
def test_unusable_or_too_large_lengths_are_refused(raw, head, error):
    server = raw([b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\nabc", OK])
    client = transport.HttpClient(timeout=5)
    peak = 0

    def call() -> None:
        with pytest.raises(transport.BadAnswer) as info:
            client.request("GET", server.url + "/", None, {})
        assert error in str(info.value)

    peak = _traced_peak(call)
    assert peak < 4 * 1024 * 1024
    assert client.request("GET", server.url + "/", None, {}).content == b"ok"
    assert server.connections == 2  # the refused answer's connection was not reused


def test_the_limit_holds_for_answers_without_a_length(raw):
    piece = b"x" * 4000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(5)) + b"0\r\n\r\n"
    server = raw(
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + piece * 5,
        ],
        close_after=True,
    )
    client = transport.HttpClient(timeout=5, max_answer=10_000)
    for _ in range(2):
        with pytest.raises(transport.BadAnswer, match="larger than the limit of 10000 bytes"):
            client.request("GET", server.url + "/", None, {})
    small = transport.HttpClient(timeout=5, max_answer=20_000)
    server = raw([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked])
    assert small.request("GET", server.url + "/", None, {}).content == piece * 5


def test_a_refused_answer_is_one_line_through_the_session(raw):
    server = raw([b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\nabc"])
    session = MasterSession(server.url, timeout=5, max_answer_size=1024)
    from slapos.slap import ConnectionError

    with pytest.raises(ConnectionError) as info:
        session.get("getComputerStatus")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot call master {server.url}/ (GET getComputerStatus): ")
    assert "answer of 100000000000 bytes refused: larger than the limit of 1024 bytes" in message


@pytest.mark.parametrize("proxy", ["socks5://127.0.0.1:1080", "socks5h://h:1", "https://p:3128"])
def test_a_proxy_that_is_not_http_is_refused(raw, monkeypatch, proxy):
    """all_proxy=socks5://... is not spoken to as an HTTP proxy (requests would need PySocks;
    http.client would send it plain HTTP): a clear error, and nothing sent anywhere."""
    server = raw([OK])
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("all_proxy", proxy)
    session = MasterSession(server.url, timeout=5)
    from slapos.slap import ConnectionError

    with pytest.raises(ConnectionError, match="is not an http:// proxy") as info:
        session.get("getComputerStatus")
    assert proxy in str(info.value) and "no_proxy" in str(info.value)
    assert "\n" not in str(info.value)
    assert server.connections == 0
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert MasterSession(server.url, timeout=5).get("getComputerStatus") == b"ok"


def test_an_http_proxy_relays_plain_http(raw, monkeypatch):
    """http_proxy=http://user:pw@host:port gets absolute-form requests with credentials."""
    proxy = raw([OK])
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy.url.replace("http://", "http://u:p@"))
    session = MasterSession("http://master.invalid:8000/", timeout=5)
    assert session.get("getComputerStatus", {"computer_id": "C"}) == b"ok"
    request = proxy.requests[0][1]
    assert request.startswith(
        b"GET http://master.invalid:8000/getComputerStatus?computer_id=C HTTP/1.1\r\n"
        b"Host: master.invalid:8000\r\n"
    )
    assert b"\r\nProxy-Authorization: Basic dTpw\r\n" in request
