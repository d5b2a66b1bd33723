"""The slap library's HTTP transport against an in-thread HTTP/1.1 server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slapos.slap import transport
from slapos.slap.session import MasterSession
from tests.fixtures.common import free_port


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
    session = MasterSession(
        "https://127.0.0.1:1/", cert_file="c.pem", key_file="k.pem", master_ca_file="ca.pem"
    )
    assert session.session.verify == "ca.pem"
    assert session.session.cert == ("c.pem", "k.pem")
    assert session.session.trust_env is False
