"""TLS: the master's certificate is verified, against master_ca_file or the system's trust
store, unless master_tls_verify is off; the client certificate is presented on https."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slapos.slap import ConnectionError, slap
from tests.fixtures.common import serve_http, tls_server_context

COMPUTER_DOC = (
    '<marshal><object id="i2" module="slapos.slap.slap" class="Computer"><tuple>'
    '<string>COMP-T</string></tuple><dictionary id="i3"><string>_computer_id</string>'
    '<string>COMP-T</string><string>_computer_partition_list</string><list id="i4"/>'
    '<string>_software_release_list</string><list id="i5"/></dictionary></object></marshal>'
)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, _name(name)


def issue(
    directory: Path,
    ca: tuple[Path, ec.EllipticCurvePrivateKey, x509.Name],
    name: str,
    san: bool = False,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca[2])
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if san:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(ca[1], hashes.SHA256())
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        self.server.peers.append(subject.get("commonName"))  # type: ignore[attr-defined]
        data = COMPUTER_DOC.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    server_ca = make_ca(tmp_path, "server-ca")
    client_ca = make_ca(tmp_path, "client-ca")
    other_ca = make_ca(tmp_path, "other-ca")
    server_cert, server_key = issue(tmp_path, server_ca, "master", san=True)
    client_cert, client_key = issue(tmp_path, client_ca, "COMP-T")
    return {
        "server_ca": server_ca[0],
        "client_ca": client_ca[0],
        "other_ca": other_ca[0],
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


@pytest.fixture
def https_master(pki: dict[str, Path]) -> Iterator[HTTPServer]:
    context = tls_server_context(pki["server_cert"], pki["server_key"])
    context.load_verify_locations(pki["client_ca"])
    context.verify_mode = ssl.CERT_REQUIRED
    with serve_http(Handler, tls=context) as served:
        served.server.peers = []  # type: ignore[attr-defined]
        yield served.server


def url(server: HTTPServer) -> str:
    return f"https://127.0.0.1:{server.server_address[1]}"


def connect(server: HTTPServer, pki: dict[str, Path], ca: str | None, verify: bool = True) -> slap:
    s = slap()
    s.initializeConnection(
        url(server),
        key_file=str(pki["client_key"]),
        cert_file=str(pki["client_cert"]),
        master_ca_file=str(pki[ca]) if ca else None,
        timeout=5,
        master_tls_verify=verify,
    )
    return s


def test_verified_master_and_client_certificate(https_master, pki):
    s = connect(https_master, pki, "server_ca")
    assert s.registerComputer("COMP-T").getComputerPartitionList() == []
    assert https_master.peers == ["COMP-T"]  # type: ignore[attr-defined]


def test_master_with_another_ca_is_refused(https_master, pki):
    s = connect(https_master, pki, "other_ca")
    with pytest.raises(ConnectionError, match="TLS error") as info:
        s.registerComputer("COMP-T").getComputerPartitionList()
    assert "\n" not in str(info.value)


def test_without_ca_file_the_system_trust_store_is_used(https_master, pki):
    """Upstream never checks the master; we do, against the system's CAs by default."""
    s = connect(https_master, pki, None)
    with pytest.raises(ConnectionError, match="certificate could not be verified") as info:
        s.registerComputer("COMP-T").getComputerPartitionList()
    assert "master_ca_file" in str(info.value)
    assert https_master.peers == []  # type: ignore[attr-defined]


def test_master_tls_verify_off_connects_and_warns(https_master, pki, caplog):
    with caplog.at_level("WARNING", logger="slapos.slap.session"):
        s = connect(https_master, pki, "other_ca", verify=False)
    assert s.registerComputer("COMP-T").getComputerPartitionList() == []
    assert https_master.peers == ["COMP-T"]  # type: ignore[attr-defined]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "master_tls_verify is off" in warnings[0]
    assert url(https_master) in warnings[0]


class Refusing(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_refused_without_a_client_certificate_says_which_keys_to_set(pki):
    """A master asking for no certificate in TLS but refusing at HTTP level (403)."""
    context = tls_server_context(pki["server_cert"], pki["server_key"])
    with serve_http(Refusing, tls=context) as served:
        s = slap()
        s.initializeConnection(served.url, master_ca_file=str(pki["server_ca"]), timeout=5)
        with pytest.raises(Exception, match="HTTP 403") as info:
            s.registerComputer("COMP-T").getComputerPartitionList()
        assert "set key_file and cert_file" in str(info.value)
        s = connect(served.server, pki, "server_ca")  # with one: the plain refusal
        with pytest.raises(Exception, match="HTTP 403") as info:
            s.registerComputer("COMP-T").getComputerPartitionList()
        assert "key_file" not in str(info.value)


class TunnelProxy:
    """An HTTP proxy for https: answers CONNECT (or refuses it), then relays bytes."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://user:pa%40ss@127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            self.heads.append(head)
            if self.refuse:
                client.sendall(b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = head.split()[1].decode().rpartition(":")
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.0 200 Connection established\r\n\r\n")
                threading.Thread(target=_relay, args=(upstream, client), daemon=True).start()
                _relay(client, upstream)

    def close(self) -> None:
        self.listener.close()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


def test_https_through_a_connect_proxy_from_the_environment(https_master, pki, monkeypatch):
    proxy = TunnelProxy()
    try:
        monkeypatch.setenv("https_proxy", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        s = connect(https_master, pki, "server_ca")  # the name checked is the master's
        assert s.registerComputer("COMP-T").getComputerPartitionList() == []
        assert s.registerComputer("COMP-T").getComputerPartitionList() == []
        port = https_master.server_address[1]
        # one tunnel per call: this master answers in HTTP/1.0 and closes
        assert (
            proxy.heads
            == [
                f"CONNECT 127.0.0.1:{port} HTTP/1.0\r\n"
                "Proxy-Authorization: Basic dXNlcjpwYUBzcw==\r\n\r\n".encode()
            ]
            * 2
        )
        assert https_master.peers == ["COMP-T", "COMP-T"]  # type: ignore[attr-defined]
    finally:
        proxy.close()


def test_a_proxy_refusing_the_tunnel_is_a_connection_error(https_master, pki, monkeypatch):
    proxy = TunnelProxy(refuse=True)
    try:
        monkeypatch.setenv("https_proxy", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        s = connect(https_master, pki, "server_ca")
        with pytest.raises(ConnectionError, match="Tunnel connection failed: 403"):
            s.registerComputer("COMP-T").getComputerPartitionList()
    finally:
        proxy.close()
