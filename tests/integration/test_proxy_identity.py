"""Identity rules against a running `slapos proxy start` (slapos.proxy.identity), on plain
HTTP (declared X-SlapPartition identities) and on https with client certificates: each rule,
with raw requests, with our slap library and with upstream 1.26.1's."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from slapos.slap.marshal import dumps, loads
from tests.fixtures.common import REPO, free_port, wait_for
from tests.fixtures.proxy import request_form, start_proxy
from tests.fixtures.upstream import RunningProxy, Upstream
from tests.integration.test_proxy_tls import _certificate, make_pki

COMPUTER = "COMP-ID"
SR = "http://sr.example.invalid/software.cfg"


def _declared(partition: str) -> dict[str, str]:
    return {
        "Authorization": f"X-SlapPartition computer_id={COMPUTER}, "
        f"computer_partition_id={partition}"
    }


def _populate(session: requests.Session, url: str) -> None:
    """Five partitions; instance a on slappart0, b on slappart1."""
    computer = {
        "reference": COMPUTER,
        "address": "127.0.0.1",
        "netmask": "255.0.0.0",
        "partition_list": [
            {"reference": f"slappart{i}", "tap": {"name": f"t{i}"}, "address_list": []}
            for i in range(5)
        ],
    }
    answer = session.post(
        f"{url}/loadComputerConfigurationFromXML", data={"xml": dumps(computer)}, timeout=10
    )
    assert answer.text == "done", answer.text
    for title in ("a", "b"):
        answer = session.post(
            f"{url}/requestComputerPartition", data=request_form(title), timeout=10
        )
        assert answer.status_code == 200, answer.text


def _refused(answer: requests.Response, *fragments: str) -> None:
    assert answer.status_code == 403, (answer.status_code, answer.text)
    text = answer.text
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        text = answer.json()["title"]
    assert "\n" not in text.strip(), text
    for fragment in fragments:
        assert fragment in text, text


def _connection(session: requests.Session, url: str, partition: str) -> dict[str, str]:
    answer = session.get(
        f"{url}/registerComputerPartition",
        timeout=10,
        params={"computer_reference": COMPUTER, "computer_partition_reference": partition},
    )
    assert answer.status_code == 200, answer.text
    return dict(loads(answer.text).state.get("_connection_dict") or {})


# ---- plain HTTP -----------------------------------------------------------------------------


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[RunningProxy]:
    yield from start_proxy(tmp_path / "proxy", computer_id=COMPUTER)


def test_plain_cross_partition_writes_are_refused(plain: RunningProxy) -> None:
    url, http = plain.url, requests.Session()
    http.trust_env = False
    _populate(http, url)
    as_a = _declared("slappart0")
    b = {"computer_id": COMPUTER, "computer_partition_id": "slappart1"}
    writes = [
        ("setComputerPartitionConnectionXml", {**b, "connection_xml": dumps({"stolen": "1"})}),
        ("destroyedComputerPartition", b),
        ("softwareInstanceRename", {**b, "new_name": "renamed"}),
        ("softwareInstanceBang", {**b, "message": "bang"}),
        ("requestComputerPartition", request_form("child", extra=b)),
    ]
    for path, data in writes:
        answer = http.post(f"{url}/{path}", data=data, headers=as_a, timeout=10)
        _refused(answer, "partition COMP-ID/slappart0", "not on partition COMP-ID/slappart1")
    assert _connection(http, url, "slappart1") == {}
    # JSON-RPC alike: instance b is partition slappart1
    for method, body in (
        (
            "put.v0.software_instance_connection_parameter",
            {"instance_guid": "b______0", "connection_parameter_dict": {"stolen": "1"}},
        ),
        ("put.v0.software_instance_bang", {"instance_guid": "b______0", "message": "x"}),
        ("put.v0.software_instance_title", {"instance_guid": "b______0", "title": "z"}),
        (
            "put.v0.software_instance_reported_state",
            {"instance_guid": "b______0", "reported_state": "destroyed"},
        ),
    ):
        answer = http.post(f"{url}/slapos.{method}", json=body, headers=as_a, timeout=10)
        _refused(answer, "not on instance b______0 (partition COMP-ID/slappart1)")
    assert _connection(http, url, "slappart1") == {}
    # what A may do: write to itself, request and update its own child (legacy and JSON-RPC)
    mine = {"computer_id": COMPUTER, "computer_partition_id": "slappart0"}
    answer = http.post(
        f"{url}/setComputerPartitionConnectionXml",
        headers=as_a,
        timeout=10,
        data={**mine, "connection_xml": dumps({"k": "v"})},
    )
    assert answer.text == "done"
    for parameters in ({}, {"x": "1"}):
        form = request_form("child", parameters, extra=mine)
        answer = http.post(f"{url}/requestComputerPartition", data=form, headers=as_a, timeout=10)
        assert answer.status_code == 200, answer.text
    answer = http.post(
        f"{url}/slapos.post.v0.software_instance",
        headers=as_a,
        timeout=10,
        json={"title": "kid", "software_release_uri": SR, "software_type": "default"},
    )
    assert answer.status_code == 200, answer.text


def test_plain_upstream_and_our_libraries_keep_working(
    plain: RunningProxy, upstream: Upstream
) -> None:
    """1.26.1's library, as instance code uses it, sends X-SlapPartition on every POST:
    all of it names the partition itself, so nothing it does is refused."""
    http = requests.Session()
    http.trust_env = False
    _populate(http, plain.url)
    result = upstream.python_code(
        f"""
        import slapos.slap
        slap = slapos.slap.slap()
        slap.initializeConnection({plain.url!r})
        cp = slap.registerComputerPartition({COMPUTER!r}, "slappart0")
        cp.setConnectionDict({{"url": "http://a"}})
        child = cp.request({SR!r}, "default", "child", partition_parameter_kw={{"p": "1"}})
        child = cp.request({SR!r}, "default", "child", partition_parameter_kw={{"p": "2"}})
        cp.bang("upstream bang")
        cp.error("upstream error")
        cp.started()
        print(child.getId())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["slappart2"]
    assert _connection(http, plain.url, "slappart0") == {"url": "http://a"}

    from slapos import slap

    ours = slap.slap()
    ours.initializeConnection(plain.url, timeout=10)
    cp = ours.registerComputerPartition(COMPUTER, "slappart1")
    cp.setConnectionDict({"url": "http://b"})
    cp.bang("our bang")
    first = cp.request(SR, "default", "child-b").getId()
    updated = cp.request(SR, "default", "child-b", partition_parameter_kw={"p": "2"}).getId()
    assert first == updated == "slappart3"  # its own child, requested then updated
    assert _connection(http, plain.url, "slappart1") == {"url": "http://b"}


# ---- https with client certificates ---------------------------------------------------------


@pytest.fixture
def tls_proxy(tmp_path: Path) -> Iterator[tuple[RunningProxy, dict[str, Path]]]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    files = make_pki(tmp_path)
    d = files["ca.crt"].parent
    ca = x509.load_pem_x509_certificate(files["ca.crt"].read_bytes())
    ca_key = serialization.load_pem_private_key(files["ca.key"].read_bytes(), None)
    for name, cn in (("admin", "admin"), ("three", "a/b/c"), ("bare", COMPUTER)):
        cert, key = _certificate(cn, ca_key, ca.subject)  # type: ignore[arg-type]
        (d / f"{name}.crt").write_bytes(cert)
        (d / f"{name}.key").write_bytes(key)
        files[f"{name}.crt"], files[f"{name}.key"] = d / f"{name}.crt", d / f"{name}.key"
    port = free_port()
    gen = start_proxy(
        tmp_path / "proxy",
        computer_id=COMPUTER,
        port=port,
        extra_config=f"tls_certificate = {files['server.crt']}\ntls_key = {files['server.key']}\n"
        f"tls_ca = {files['ca.crt']}\ntls_ca_key = {files['ca.key']}\n",
    )
    proxy = next(gen)
    proxy = RunningProxy(
        f"https://127.0.0.1:{port}", proxy.config, proxy.database, proxy.computer_id, proxy.log
    )
    try:
        wait_for(lambda: "serving https://" in proxy.log.read_text(), 30, "https proxy")
        yield proxy, files
    finally:
        next(gen, None)


def _session(files: dict[str, Path], cert: Path, key: Path) -> requests.Session:
    session = requests.Session()
    session.cert, session.verify = (str(cert), str(key)), str(files["ca.crt"])
    session.trust_env = False
    return session


def _issued(admin: requests.Session, url: str, tmp: Path, name: str, **params: str) -> Path:
    if "computer_partition_id" in params:
        answer = admin.get(f"{url}/getComputerPartitionCertificate", params=params, timeout=10)
    else:
        answer = admin.post(f"{url}/generateComputerCertificate", data=params, timeout=10)
    assert answer.status_code == 200, answer.text
    pair = loads(answer.text)
    (tmp / f"{name}.crt").write_text(pair["certificate"])
    (tmp / f"{name}.key").write_text(pair["key"])
    return tmp / name


def test_tls_identities(tls_proxy, tmp_path: Path, upstream: Upstream) -> None:
    proxy, files = tls_proxy
    url = proxy.url
    admin = _session(files, files["user.crt"], files["user.key"])  # CN user:admin
    _populate(admin, url)
    full = {"computer_id": COMPUTER}

    # any other name is refused
    for name in ("admin", "three", "bare"):
        other = _session(files, files[f"{name}.crt"], files[f"{name}.key"])
        _refused(
            other.get(f"{url}/getFullComputerInformation", params=full, timeout=10),
            "is not a SlapOS identity",
        )
        _refused(
            other.get(
                f"{url}/getComputerPartitionCertificate",
                timeout=10,
                params={**full, "computer_partition_id": "slappart1"},
            )
        )

    # a computer's certificate (issued by the proxy): that computer and its partitions
    node_files = _issued(admin, url, tmp_path, "node", computer_id=COMPUTER)
    node = _session(files, node_files.with_suffix(".crt"), node_files.with_suffix(".key"))
    assert node.get(f"{url}/getFullComputerInformation", params=full, timeout=10).ok
    _refused(
        node.get(f"{url}/getFullComputerInformation", params={"computer_id": "X"}, timeout=10),
        "computer COMP-ID may only act on itself, not on computer X",
    )
    assert node.get(
        f"{url}/getComputerPartitionCertificate",
        timeout=10,
        params={**full, "computer_partition_id": "slappart1"},
    ).ok
    _refused(
        node.post(f"{url}/requestComputerPartition", data=request_form("x"), timeout=10),
        "may not call /requestComputerPartition",
    )

    # a partition's certificate: that partition only
    part_files = _issued(
        admin, url, tmp_path, "p0", computer_id=COMPUTER, computer_partition_id="slappart0"
    )
    part = _session(files, part_files.with_suffix(".crt"), part_files.with_suffix(".key"))
    _refused(
        part.get(
            f"{url}/getComputerPartitionCertificate",
            timeout=10,
            params={**full, "computer_partition_id": "slappart1"},
        )
    )
    _refused(
        part.post(
            f"{url}/slapos.put.v0.software_instance_bang",
            timeout=10,
            json={"instance_guid": "b______0", "message": "m"},
        )
    )
    _refused(part.post(f"{url}/requestComputerPartition", data=request_form("kid"), timeout=10))
    own = {**full, "computer_partition_id": "slappart0"}
    assert part.post(
        f"{url}/requestComputerPartition", data=request_form("kid", extra=own), timeout=10
    ).ok

    # our library, verifying the proxy against the CA, as the node; upstream's as the user
    from slapos import slap
    from slapos.slap import AuthenticationError

    ours = slap.slap()
    ours.initializeConnection(
        url,
        key_file=str(node_files.with_suffix(".key")),
        cert_file=str(node_files.with_suffix(".crt")),
        master_ca_file=str(files["ca.crt"]),
        timeout=10,
    )
    assert len(ours.registerComputer(COMPUTER).getComputerPartitionList()) == 5
    with pytest.raises(AuthenticationError, match="not on computer OTHER"):
        ours.registerComputer("OTHER").getComputerPartitionList()
    result = upstream.python_code(
        f"""
        import slapos.slap
        slap = slapos.slap.slap()
        slap.initializeConnection({url!r}, key_file={str(files["user.key"])!r},
                                  cert_file={str(files["user.crt"])!r})
        print(len(slap.registerComputer({COMPUTER!r}).getComputerPartitionList()))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5"]
    # 1.26.1's library as a node (computer certificate) and as instance code (partition's)
    result = upstream.python_code(
        f"""
        import slapos.slap
        node = slapos.slap.slap()
        node.initializeConnection({url!r}, key_file={str(node_files.with_suffix(".key"))!r},
                                  cert_file={str(node_files.with_suffix(".crt"))!r})
        print(len(node.registerComputer({COMPUTER!r}).getComputerPartitionList()))
        node.registerComputerPartition({COMPUTER!r}, "slappart1").error("node report")
        part = slapos.slap.slap()
        part.initializeConnection({url!r}, key_file={str(part_files.with_suffix(".key"))!r},
                                  cert_file={str(part_files.with_suffix(".crt"))!r})
        cp = part.registerComputerPartition({COMPUTER!r}, "slappart0")
        cp.setConnectionDict({{"url": "http://a"}})
        print(cp.request({SR!r}, "default", "grandkid").getId())
        try:
            part.registerComputerPartition({COMPUTER!r}, "slappart1").setConnectionDict({{}})
        except Exception as exc:
            print("refused", type(exc).__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "5" and lines[1].startswith("slappart"), lines
    assert lines[2].startswith("refused "), lines

    # revoked while the proxy runs: refused at once; the next certificate has a new name
    revoke = subprocess.run(
        [
            sys.executable,
            "-m",
            "slapos",
            "proxy",
            "revoke",
            "--cfg",
            str(proxy.config),
            "COMP-ID/slappart0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert revoke.returncode == 0, revoke.stderr
    assert revoke.stdout == "revoked COMP-ID/slappart0\n"
    _refused(
        part.get(
            f"{url}/registerComputerPartition",
            timeout=10,
            params={"computer_reference": COMPUTER, "computer_partition_reference": "slappart0"},
        ),
        "certificate 'COMP-ID/slappart0' has been revoked",
    )
    renewed = _issued(admin, url, tmp_path, "p0-new", **own)
    assert _common_name(renewed.with_suffix(".crt")) == "COMP-ID/slappart0#1"
    again = _session(files, renewed.with_suffix(".crt"), renewed.with_suffix(".key"))
    assert again.get(
        f"{url}/registerComputerPartition",
        timeout=10,
        params={"computer_reference": COMPUTER, "computer_partition_reference": "slappart0"},
    ).ok
    listed = subprocess.run(
        [sys.executable, "-m", "slapos", "proxy", "revoke", "--cfg", str(proxy.config), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["COMP-ID/slappart0"]


def _common_name(path: Path) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
