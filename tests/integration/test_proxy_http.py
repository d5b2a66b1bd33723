"""`slapos proxy start` over raw sockets on loopback: framing, limits, deadlines, memory.

Every malformed request is refused (400/413/414/431/501) and its connection closed; the
same requests go through h11 (a strict, independent HTTP/1.1 parser) and nothing h11
refuses gets through us. Idle sockets, plain or TLS, do not stall a normal request, and
request bodies trickling in do not grow the proxy's memory.

The tests that do not depend on the server run on both (`http_server = gunicorn` and
`granian`, the `proxy` and `shared_proxy` fixtures' parameter); where granian answers
otherwise, its answer is written out here (`GRANIAN`), and docs/proxy.rst says why.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import h11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slapos.slap.marshal import loads
from tests.fixtures.common import wait_for
from tests.fixtures.proxy import proxy_pid, start_proxy, with_http_server
from tests.fixtures.upstream import RunningProxy

MiB = 1024 * 1024

#: malformed requests: each must be refused with this status and the connection closed
MALFORMED = {
    "cl and te": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    "te and cl": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    "differing lengths": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    ),
    "signed length": (b"POST /getRunId HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab", 400),
    "negative length": (b"POST /getRunId HTTP/1.1\r\nHost: x\r\nContent-Length: -2\r\n\r\n", 400),
    "vt before chunked": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "nbsp after chunked": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n",
        501,
    ),
    "chunk size with a space": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b" 2\r\nab\r\n0\r\n\r\n",
        400,
    ),
    "chunk size in 0x": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0x2\r\nab\r\n0\r\n\r\n",
        400,
    ),
    "length in a trailer": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\nContent-Length: 40\r\n\r\n",
        400,
    ),
    "bare lf in a header": (b"GET /getRunId HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-B: 2\r\n\r\n", 400),
    "cr in a value": (b"GET /getRunId HTTP/1.1\r\nHost: x\rz\r\n\r\n", 400),
    "nul in a value": (b"GET /getRunId HTTP/1.1\r\nHost: x\x00z\r\n\r\n", 400),
    "control byte in a value": (b"GET /getRunId HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    "control byte in the path": (b"GET /get\x01RunId HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "nul in the path": (b"GET /get\x00RunId HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "obsolete folding": (b"GET /getRunId HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 400),
    "space before colon": (b"GET /getRunId HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n", 400),
    "two hosts": (b"GET /getRunId HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "request line too long": (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "too many fields": (
        b"GET /getRunId HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(200))
        + b"\r\n",
        431,
    ),
    "field too large": (
        b"GET /getRunId HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20000 + b"\r\n\r\n",
        431,
    ),
    "body over the limit": (
        b"POST /getRunId HTTP/1.1\r\nHost: x\r\nContent-Length: 70000000\r\n\r\nabc",
        413,
    ),
}

#: the servers `slapos proxy start` can use
SERVERS = ("gunicorn", "granian")

#: MALFORMED requests granian answers otherwise: the status (still with the connection
#: closed and nothing behind the request answered), or None: accepted, as a valid request.
#: Chunked bodies are refused before they are read outside the shacache (411: granian's
#: wsgi.input cannot tell a body that ended from one that broke off); hyper's own
#: refusals are 400 without a reason; a bare LF ends a line for hyper (RFC 9112 2.2
#: allows it), a difference only a front that reads it otherwise could exploit
GRANIAN: dict[str, int | None] = {
    "cl and te": 411, "te and cl": 411, "chunk size with a space": 411,
    "chunk size in 0x": 411, "length in a trailer": 411, "nbsp after chunked": 400,
    "bare lf in a header": None,
}  # fmt: skip

#: well-formed requests, answered by the application (200)
_FORM = b"url=http%3A%2F%2Fsr%2Fv.cfg&computer_id=local_computer&state=available"
VALID = {
    "get": b"GET /getRunId HTTP/1.1\r\nHost: x\r\n\r\n",
    "post with a length": b"POST /supplySupply HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_FORM), _FORM),
    "post chunked": (
        b"POST /supplySupply HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(_FORM), _FORM)
    ),
    "http/1.0": b"GET /getRunId HTTP/1.0\r\n\r\n",
    "tab in a value": b"GET /getRunId HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n",
}


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    """The `http_server` of the proxy under test."""
    return str(request.param)


@pytest.fixture
def proxy(tmp_path: Path, server: str) -> Iterator[RunningProxy]:
    """Our proxy with short deadlines (the tests wait for them)."""
    yield from start_proxy(tmp_path / "proxy", extra_config=_on(server, "head_timeout = 3\n"))


@pytest.fixture(scope="module", params=SERVERS)
def shared_proxy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProxy]:
    """One proxy per server for the tests that send one request per connection."""
    directory = tmp_path_factory.mktemp(f"shared-{request.param}") / "proxy"
    yield from start_proxy(directory, extra_config=_on(request.param, ""))


def _on(server: str, extra_config: str) -> str:
    return with_http_server(extra_config, server)


def _server_of(proxy: RunningProxy) -> str:
    return "granian" if "http_server = granian" in proxy.config.read_text() else "gunicorn"


def _exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send `data`, read until the proxy closes (or `timeout`): (all bytes, closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # refused before everything was sent
            sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            pass
        return received, True


def _statuses(received: bytes) -> list[int]:
    return [
        int(line.split(b" ")[1]) for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.")
    ]


def _port(proxy: RunningProxy) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_requests_are_refused_and_the_connection_closed(
    shared_proxy: RunningProxy, name: str
) -> None:
    data, status = MALFORMED[name]
    # a second, valid request behind it must never be answered (no smuggling)
    received, closed = _exchange(
        _port(shared_proxy), data + b"GET /getRunId HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5
    )
    if _server_of(shared_proxy) == "granian" and name in GRANIAN:
        if GRANIAN[name] is None:  # read as a valid request, then the one behind it
            assert received.count(b"HTTP/1.1 200 OK\r\n") == 2 and not closed, received[:300]
            return
        status = GRANIAN[name] or status
    assert _statuses(received) == [status], received[:300]
    assert closed, "the connection must be closed after a refused request"


def test_absolute_looking_paths_are_not_rewritten(shared_proxy: RunningProxy) -> None:
    for path in (b"/hateoas/x://y/getRunId", b"/shacache/a://b/getRunId", b"/x://y/getRunId"):
        received, _ = _exchange(
            _port(shared_proxy), b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path
        )
        assert _statuses(received) == [404], (path, received[:300])


def test_valid_requests_are_served_with_keep_alive(shared_proxy: RunningProxy) -> None:
    granian = _server_of(shared_proxy) == "granian"
    with socket.create_connection(("127.0.0.1", _port(shared_proxy)), timeout=10) as sock:
        reader = sock.makefile("rb")
        for name, data in VALID.items():
            if name == "http/1.0" or (granian and name == "post chunked"):  # 411, tested below
                continue
            sock.sendall(data)
            assert reader.readline().startswith(b"HTTP/1.1 200 "), name
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert reader.read(length), name


def _read_answer(reader: Any, head: bool = False) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One answer from a buffered reader: status line, headers (lower-case), body (none
    for a HEAD request)."""
    status = reader.readline()
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head else int(headers.get(b"content-length", b"0"))
    return status, headers, reader.read(length)


def test_header_names_with_underscores_are_dropped(shared_proxy: RunningProxy) -> None:
    answers = []
    for name in (b"X_Forwarded_Proto", b"X-Forwarded-Proto"):
        received, _ = _exchange(
            _port(shared_proxy),
            b"GET /getHateoasUrl HTTP/1.1\r\nHost: h:1\r\n%s: https\r\n"
            b"Connection: close\r\n\r\n" % name,
        )
        answers.append(received.split(b"\r\n\r\n", 1)[1])
    if _server_of(shared_proxy) == "granian":  # a known difference: its environ cannot
        # tell X_Forwarded_Proto from X-Forwarded-Proto (docs/proxy.rst)
        assert answers == [b"https://h:1/hateoas/"] * 2
        return
    assert answers == [b"http://h:1/hateoas/", b"https://h:1/hateoas/"]


def test_pipelined_requests_are_answered_in_order(shared_proxy: RunningProxy) -> None:
    with socket.create_connection(("127.0.0.1", _port(shared_proxy)), timeout=10) as sock:
        sock.sendall(
            b"GET /getRunId HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /getRunId HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /getRunId HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        reader = sock.makefile("rb")
        first = _read_answer(reader)
        assert first[0].startswith(b"HTTP/1.1 200 ") and len(first[2]) == 32
        assert _read_answer(reader)[0].startswith(b"HTTP/1.1 404 ")
        status, headers, _ = _read_answer(reader, head=True)  # the length, no body
        assert status.startswith(b"HTTP/1.1 200 ") and headers[b"content-length"] == b"32"
        last = reader.read()  # the last answer, then the connection closes
        assert last.startswith(b"HTTP/1.1 200 ") and last.endswith(first[2])


def test_bytes_behind_a_closing_request_do_not_cut_its_answer(shared_proxy: RunningProxy) -> None:
    # the client asks for the close but sends more: the answer still arrives whole, and
    # the rest is not answered (a close with unread bytes would reset the connection)
    received, closed = _exchange(
        _port(shared_proxy),
        b"GET /getRunId HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        b"GET /getRunId HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert _statuses(received) == [200] and closed
    assert len(received.split(b"\r\n\r\n", 1)[1]) == 32


def test_closed_connections_free_their_place_under_max_connections(
    tmp_path: Path, server: str
) -> None:
    # three connections at most, four clients: each answered `Connection: close` request
    # must give its place back, or the proxy would stop accepting after the third
    running = start_proxy(
        tmp_path / "proxy", extra_config=_on(server, "threads = 2\nmax_connections = 3\n")
    )
    proxy = next(running)
    try:
        port = _port(proxy)
        request = b"GET /getRunId HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answers: list[bytes] = []

        def client() -> None:
            for _ in range(25):
                answer = _exchange(port, request, timeout=5)[0]
                answers.append(answer)
                if _statuses(answer) != [200]:
                    return

        clients = [threading.Thread(target=client) for _ in range(4)]
        for each in clients:
            each.start()
        for each in clients:
            each.join(60)
        assert [_statuses(a) for a in answers] == [[200]] * 100
        assert all(len(a.split(b"\r\n\r\n", 1)[1]) == 32 for a in answers)
        # and a kept-alive connection is served as before (one may be kept: 3 - 2 threads)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reader = sock.makefile("rb")
            for _ in range(3):
                sock.sendall(b"GET /getRunId HTTP/1.1\r\nHost: x\r\n\r\n")
                assert _read_answer(reader)[0].startswith(b"HTTP/1.1 200 ")
    finally:
        next(running, None)


def test_http10_closes_unless_keep_alive_is_asked(shared_proxy: RunningProxy) -> None:
    received, closed = _exchange(_port(shared_proxy), b"GET /getRunId HTTP/1.0\r\n\r\n")
    assert _statuses(received) == [200] and closed
    with socket.create_connection(("127.0.0.1", _port(shared_proxy)), timeout=10) as sock:
        reader = sock.makefile("rb")
        for _ in range(2):
            sock.sendall(b"GET /getRunId HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = _read_answer(reader)
            assert status.startswith(b"HTTP/1.0 200 ") and len(body) == 32
            assert headers[b"connection"].lower() == b"keep-alive"


def test_expect_100_continue(shared_proxy: RunningProxy) -> None:
    with socket.create_connection(("127.0.0.1", _port(shared_proxy)), timeout=10) as sock:
        sock.sendall(
            b"POST /supplySupply HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % len(_FORM)
        )
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(_FORM)
        assert _read_answer(reader)[0].startswith(b"HTTP/1.1 200 ")


def test_chunked_post_to_supply_supply_is_read(proxy: RunningProxy) -> None:
    form = urlencode({"url": "http://sr/chunked.cfg", "computer_id": proxy.computer_id,
                      "state": "available"}).encode()  # fmt: skip
    body = (
        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (form[:10], form[10:]))
        + b"0\r\n\r\n"
    )
    received, _ = _exchange(
        _port(proxy),
        b"POST /supplySupply HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n" + body,
    )
    granian = _server_of(proxy) == "granian"  # refused unread: see GRANIAN
    assert _statuses(received) == [411 if granian else 200], received
    answer, _ = _exchange(
        _port(proxy),
        b"GET /getFullComputerInformation?computer_id=%s HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n" % proxy.computer_id.encode(),
    )
    computer = loads(answer.split(b"\r\n\r\n", 1)[1].decode())
    releases = computer.state["_software_release_list"]
    urls = [software.state["_software_release"] for software in releases]
    assert urls == ([] if granian else ["http://sr/chunked.cfg"])


@pytest.mark.parametrize("spooled", [False, True])
def test_a_body_cut_short_is_refused_not_applied(proxy: RunningProxy, spooled: bool) -> None:
    form = urlencode(
        {"url": "http://sr/cut.cfg", "computer_id": proxy.computer_id, "state": "available"}
    ).encode()
    if spooled:  # past body_spool_size (1 MiB): read into a temporary file
        form += b"&padding=" + b"p" * (2 * MiB)
    with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=10) as sock:
        sock.sendall(
            b"POST /supplySupply HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(form) + 100, form)
        )
        sock.shutdown(socket.SHUT_WR)  # the last 100 bytes never come
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert _statuses(received) == [400] and b"request body incomplete" in received
    answer, _ = _exchange(
        _port(proxy),
        b"GET /getFullComputerInformation?computer_id=%s HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n" % proxy.computer_id.encode(),
    )
    computer = loads(answer.split(b"\r\n\r\n", 1)[1].decode())
    assert computer.state["_software_release_list"] == []


def _memory_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


def _serving_pids(proxy: RunningProxy) -> list[int]:
    """The proxy's process and its children (granian's workers)."""
    pid = proxy_pid(proxy)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def test_memory_stays_bounded_while_large_bodies_trickle_in(proxy: RunningProxy) -> None:
    pids = _serving_pids(proxy)
    size = 60 * MiB
    piece = b"x" * MiB
    sockets = []
    try:
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", _port(proxy)), timeout=30)
            sock.sendall(
                b"POST /requestComputerPartition HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: %d\r\n\r\n" % size
            )
            sockets.append(sock)
        for sent in range(size // MiB - 1):  # all but the last MiB, in turns
            for sock in sockets:
                sock.sendall(piece if sent < size // MiB - 2 else piece[:-1])
        time.sleep(0.5)  # the last pieces reach the proxy
        peak = max(_memory_mib(pid, "VmHWM") for pid in pids)
        assert peak < 100, f"the proxy's peak RSS reached {peak:.0f} MiB"
    finally:
        for sock in sockets:
            sock.close()


def _answer_time(port: int, context: ssl.SSLContext | None = None) -> float:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        sock = context.wrap_socket(raw) if context is not None else raw
        sock.sendall(b"GET /getRunId HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert _statuses(received) == [200]
    return time.monotonic() - started


def _idle_sockets(port: int, count: int) -> list[socket.socket]:
    idle = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        idle.append(sock)
    return idle


def test_a_thousand_idle_sockets_do_not_stall_a_request(proxy: RunningProxy) -> None:
    idle = _idle_sockets(_port(proxy), 1000)
    try:
        # more than the proxy has threads started a request and stalled: they wait in the
        # event loop, not in threads
        for sock in idle[:50]:
            sock.sendall(b"GET /getRunId HTTP/1.1\r\nHo")
        assert max(_answer_time(_port(proxy)) for _ in range(3)) < 1.0
    finally:
        for sock in idle:
            sock.close()


def test_idle_connections_are_closed_after_the_head_deadline(proxy: RunningProxy) -> None:
    started = time.monotonic()
    silent, _ = _exchange(_port(proxy), b"", timeout=15)
    partial, _ = _exchange(_port(proxy), b"GET /getRunId HTTP/1.1\r\nHost: x\r\n", timeout=15)
    assert silent == partial == b""
    assert time.monotonic() - started < 2 * (3 + 1.5)  # head_timeout = 3, checked each second


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    cert, key_path = directory / "server.crt", directory / "server.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_path


def test_tls_sockets_that_never_handshake_do_not_stall_a_request(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path / "pki")
    running = start_proxy(
        tmp_path / "proxy",
        extra_config=f"tls_certificate = {cert}\ntls_key = {key}\nhandshake_timeout = 3\n",
    )
    proxy = next(running)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        port = _port(proxy)
        assert _answer_time(port, context) < 1.0
        idle = _idle_sockets(port, 1000)
        try:
            for sock in idle[:50]:  # a handshake started and never finished
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            assert max(_answer_time(port, context) for _ in range(3)) < 1.0
            started = time.monotonic()
            idle[0].settimeout(10)
            assert idle[0].recv(100) == b""  # closed at the handshake deadline
            assert time.monotonic() - started < 5
        finally:
            for sock in idle:
                sock.close()
    finally:
        next(running, None)


# ---- differential: the same requests through h11 -----------------------------------


def _h11_accepts(data: bytes) -> bool:
    """Whether h11, as a server, reads `data` as one complete, valid request."""
    conn = h11.Connection(our_role=h11.SERVER, max_incomplete_event_size=16 * 1024)
    conn.receive_data(data)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return False  # incomplete: never answered
            if isinstance(event, h11.Request):
                hosts = [value for name, value in event.headers if name == b"host"]
                if len(hosts) > 1:  # RFC 9112 3.2: "MUST respond with 400"; h11 leaves it to us
                    return False
            if isinstance(event, h11.EndOfMessage):
                return True
    except h11.RemoteProtocolError:
        return False


#: framing only: the body size limit is ours, h11 has none
FRAMING = [name for name in MALFORMED if name != "body over the limit"]
#: what h11 accepts and we refuse, on purpose: RFC 9112 lets a server refuse both lengths
#: (6.1: "ought to be handled as an error"), bare LF (2.2) and obsolete folding (5.2),
#: which is how requests get smuggled between two parsers; h11 ignores fields in a
#: trailer and lets control bytes through; and it has no size limits
STRICTER = {
    "cl and te", "te and cl", "length in a trailer", "bare lf in a header",
    "control byte in a value", "obsolete folding", "request line too long",
    "too many fields", "field too large",
}  # fmt: skip


#: granian: chunked bodies refused outside the shacache; a bare LF read as a line end
GRANIAN_STRICTER = (STRICTER - {"bare lf in a header"}) | {"post chunked"}


@pytest.mark.parametrize("name", [*FRAMING, *VALID])
def test_differential_against_h11(shared_proxy: RunningProxy, name: str) -> None:
    stricter = GRANIAN_STRICTER if _server_of(shared_proxy) == "granian" else STRICTER
    data = MALFORMED[name][0] if name in MALFORMED else VALID[name]
    # h11 reads only the first request
    closing = b"GET /getRunId HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    received, _ = _exchange(_port(shared_proxy), data + closing, timeout=5)
    statuses = _statuses(received)
    ours = bool(statuses) and statuses[0] < 400
    theirs = _h11_accepts(data)
    if theirs:
        assert ours or name in stricter, f"{name}: h11 accepts, we answer {statuses}"
        assert name not in stricter or not ours
    else:
        assert not ours, f"{name}: h11 refuses, we answer {statuses}"


# ---- limits per route, stop, several processes --------------------------------------


def _post(port: int, path: str, body: bytes, chunked: bool = False) -> tuple[list[int], bytes]:
    if chunked:
        framed = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + MiB]), body[i : i + MiB])
            for i in range(0, len(body), MiB)
        )
        head = b"Transfer-Encoding: chunked\r\n"
        data = framed + b"0\r\n\r\n"
    else:
        head, data = b"Content-Length: %d\r\n" % len(body), body
    received, _ = _exchange(
        port,
        b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (path.encode(), head)
        + data,
        timeout=30,
    )
    return _statuses(received), received.split(b"\r\n\r\n", 1)[-1]


def test_shacache_uploads_have_their_own_limit(tmp_path: Path, server: str) -> None:
    running = start_proxy(
        tmp_path / "proxy",
        extra_config=_on(
            server,
            f"shacache_content_directory = {tmp_path}/content\n"
            f"shacache_metadata_directory = {tmp_path}/metadata\n"
            "max_body_size = 1M\nmax_cache_body_size = 3M\nbody_spool_size = 64K\n",
        ),
    )
    proxy = next(running)
    try:
        port = _port(proxy)
        blob = bytes(range(256)) * (8 * 1024)  # 2 MiB
        for chunked in (False, True):
            statuses, sha = _post(port, "/shacache/cache", blob, chunked)
            assert statuses == [201], sha
            assert (tmp_path / "content" / sha.decode().strip()).read_bytes() == blob
            assert _post(port, "/shacache/cache", blob * 2, chunked)[0] == [413]
            # the same 2 MiB to a SLAP route: over its 1 MiB limit, spooled or not
            # (granian: a chunked body is refused before, see GRANIAN)
            refusal = 411 if chunked and server == "granian" else 413
            assert _post(port, "/supplySupply", blob, chunked)[0] == [refusal]
        received, _ = _exchange(
            port,
            b"GET /shacache/cache/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            % sha.strip(),
        )
        assert _statuses(received) == [200] and received.endswith(blob)  # sendfile()
    finally:
        next(running, None)


def test_sigterm_lets_a_request_in_progress_finish(tmp_path: Path, server: str) -> None:
    import os
    import signal

    running = start_proxy(tmp_path / "proxy", extra_config=_on(server, ""))
    proxy = next(running)
    try:
        pid = proxy_pid(proxy)
        form = urlencode(
            {"url": "http://sr/late.cfg", "computer_id": proxy.computer_id, "state": "available"}
        ).encode()
        with socket.create_connection(("127.0.0.1", _port(proxy)), timeout=10) as sock:
            sock.sendall(
                b"POST /supplySupply HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                % (len(form), form[:5])
            )
            time.sleep(0.3)  # the head is in: the request is in progress
            os.kill(pid, signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(OSError):  # no new connection once stopping
                socket.create_connection(("127.0.0.1", _port(proxy)), timeout=2).close()
            sock.sendall(form[5:])
            answer = b""
            while chunk := sock.recv(65536):  # then closed (after a short linger)
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        wait_for(lambda: "slapos proxy stopped" in proxy.log.read_text(), 10, "the proxy's stop")
    finally:
        next(running, None)


def test_several_workers_answer_from_one_database(tmp_path: Path, server: str) -> None:
    running = start_proxy(tmp_path / "proxy", extra_config=_on(server, "workers = 3\n"))
    proxy = next(running)
    try:
        port = _port(proxy)
        pid = proxy_pid(proxy)

        def children() -> list[str]:
            found = []
            for entry in Path("/proc").iterdir():
                with contextlib.suppress(OSError):
                    if entry.name.isdigit() and (entry / "stat").read_text().rpartition(")")[
                        2
                    ].split()[1] == str(pid):
                        found.append(entry.name)
            return found

        wait_for(lambda: len(children()) == 3, 10, "three worker processes")
        path = f"/getFullComputerInformation?computer_id={proxy.computer_id}"
        for k in range(6):
            url = f"http://sr/{k}.cfg"
            form = urlencode({"url": url, "computer_id": proxy.computer_id, "state": "available"})
            assert _post(port, "/supplySupply", form.encode())[0] == [200]
            for _ in range(6):  # new connections: spread over the processes
                answer, _ = _exchange(
                    port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                computer = loads(answer.split(b"\r\n\r\n", 1)[1].decode())
                releases = computer.state["_software_release_list"]
                assert len(releases) == k + 1, "a process answered from a stale cache"
    finally:
        next(running, None)


def test_tls_pipelined_requests_in_one_record(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path / "pki")
    running = start_proxy(
        tmp_path / "proxy", extra_config=f"tls_certificate = {cert}\ntls_key = {key}\n"
    )
    proxy = next(running)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        form = _FORM + b"&padding=" + b"p" * 10000  # head and body past gunicorn's 8 KiB read
        with (
            socket.create_connection(("127.0.0.1", _port(proxy)), timeout=10) as raw,
            context.wrap_socket(raw) as sock,
        ):
            sock.sendall(  # one write of less than 16 KiB: one TLS record
                b"POST /supplySupply HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                b"GET /getRunId HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                % (len(form), form)
            )
            reader = sock.makefile("rb")
            started = time.monotonic()
            assert _read_answer(reader)[0].startswith(b"HTTP/1.1 200 ")
            status, _, body = _read_answer(reader)  # not left in the TLS buffer
            assert time.monotonic() - started < 2
            assert status.startswith(b"HTTP/1.1 200 ") and len(body) == 32
    finally:
        next(running, None)
