"""Identities fail closed (slapos.proxy.identity), called in-process: every rule, plain
HTTP with declared identities (X-SlapPartition) and TLS with certificate names."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slapos.proxy.app import create_app
from slapos.proxy.config import ProxyConfig, TLSConfig
from slapos.proxy.identity import identity_of, parse_common_name
from slapos.slap.marshal import dumps, loads
from tests.unit.proxy.test_app import Client


def header(partition: str, computer: str = "COMP") -> dict[str, str]:
    return {
        "Authorization": f"X-SlapPartition computer_id={computer}, "
        f"computer_partition_id={partition}"
    }


def rpc(client: Client, method: str, headers: dict[str, str] | None = None, **body: Any):
    status, text = client.call(
        "POST", f"/slapos.{method}", headers=headers, body=json.dumps(body).encode()
    )
    return status, json.loads(text)


def _setup(client: Client) -> None:
    computer = {
        "reference": "COMP",
        "partition_list": [{"reference": f"slappart{i}", "address_list": []} for i in range(4)],
    }
    assert client.post("/loadComputerConfigurationFromXML", xml=dumps(computer)) == (200, "done")
    for title in ("a", "b"):  # a on slappart0, b on slappart1
        assert client.request(title)[0] == 200


@pytest.fixture
def plain(tmp_path: Path) -> Client:
    client = Client(
        create_app(ProxyConfig(path=None, database_uri=str(tmp_path / "db"), computer_id="COMP"))
    )
    _setup(client)
    return client


def _pki(directory: Path) -> TLSConfig:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TLSConfig(
        certificate=directory / "unused.crt",
        key=directory / "unused.key",
        ca=directory / "ca.crt",
        ca_key=directory / "ca.key",
    )


@pytest.fixture
def tls(tmp_path: Path) -> Client:
    config = ProxyConfig(
        path=None, database_uri=str(tmp_path / "db"), computer_id="COMP", tls=_pki(tmp_path)
    )
    client = Client(create_app(config), peer="user:admin")
    _setup(client)
    return client


def as_peer(client: Client, peer: str | None) -> Client:
    return Client(client.app, peer=peer)


def publish(partition: str) -> dict[str, Any]:
    return {
        "computer_id": "COMP",
        "computer_partition_id": partition,
        "connection_xml": dumps({"k": partition}),
    }


def _one_line_403(answer: tuple[int, Any], *fragments: str) -> None:
    status, text = answer
    text = text if isinstance(text, str) else text["title"]
    assert status == 403, text
    assert "\n" not in text.strip()
    for fragment in fragments:
        assert fragment in text, text


# ---- names ----------------------------------------------------------------------------------


def test_certificate_names():
    assert parse_common_name("COMP/slappart0").kind == "partition"  # type: ignore[union-attr]
    assert parse_common_name("COMP/slappart0#2").partition_id == "slappart0"  # type: ignore[union-attr]
    assert parse_common_name("computer:COMP").computer_id == "COMP"  # type: ignore[union-attr]
    assert parse_common_name("user:alice").kind == "user"  # type: ignore[union-attr]
    for name in (
        None,
        "",
        "admin",
        "COMP",
        "a/b/c",
        "/p",
        "c/",
        "computer:",
        "user:",
        "computer:a/b",
        "computer:x/slappart0",
    ):
        assert parse_common_name(name) is None, name
    assert identity_of("COMP/slappart0#12") == "COMP/slappart0"
    assert identity_of("user:a#b") == "user:a#b"


# ---- plain HTTP: declared identities --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/setComputerPartitionConnectionXml", publish("slappart1")),
        (
            "/softwareInstanceBang",
            {"computer_id": "COMP", "computer_partition_id": "slappart1", "message": "x"},
        ),
        (
            "/softwareInstanceRename",
            {"computer_id": "COMP", "computer_partition_id": "slappart1", "new_name": "z"},
        ),
        (
            "/destroyedComputerPartition",
            {"computer_id": "COMP", "computer_partition_id": "slappart1"},
        ),
        (
            "/softwareInstanceError",
            {"computer_id": "COMP", "computer_partition_id": "slappart1", "message": "x"},
        ),
        (
            "/startedComputerPartition",
            {"computer_id": "COMP", "computer_partition_id": "slappart1"},
        ),
        ("/supplySupply", {"computer_id": "COMP", "url": "http://sr", "state": "available"}),
    ],
)
def test_plain_a_declared_partition_may_not_write_to_another(plain, path, form):
    _one_line_403(plain.post(path, header("slappart0"), **form), "partition COMP/slappart0")
    assert plain.post(path, None, **form)[0] == 200  # without a declaration: a user


def test_plain_a_declared_partition_acts_on_itself_and_its_children(plain):
    mine = header("slappart0")
    assert plain.post("/setComputerPartitionConnectionXml", mine, **publish("slappart0")) == (
        200,
        "done",
    )
    status, _ = plain.request(
        "child", headers=mine, computer_id="COMP", computer_partition_id="slappart0"
    )
    assert status == 200
    again = plain.request(
        "child",
        headers=mine,
        params={"x": "1"},
        computer_id="COMP",
        computer_partition_id="slappart0",
    )
    assert again[0] == 200  # updating its own child
    refused = plain.request(
        "child", headers=mine, computer_id="COMP", computer_partition_id="slappart1"
    )
    _one_line_403(refused, "not on partition COMP/slappart1")
    _one_line_403(
        plain.post(
            "/softwareInstanceBang",
            {"Authorization": "X-SlapPartition x=y"},
            computer_id="COMP",
            computer_partition_id="slappart0",
            message="m",
        ),
        "must name computer_id and computer_partition_id",
    )


def test_plain_json_rpc_declared_partition(plain):
    mine, b = header("slappart0"), "b______0"
    for method, body in (
        (
            "put.v0.software_instance_connection_parameter",
            {"instance_guid": b, "connection_parameter_dict": {"k": "v"}},
        ),
        ("put.v0.software_instance_bang", {"instance_guid": b, "message": "x"}),
        ("put.v0.software_instance_title", {"instance_guid": b, "title": "z"}),
        (
            "put.v0.software_instance_reported_state",
            {"instance_guid": b, "reported_state": "destroyed"},
        ),
    ):
        _one_line_403(rpc(plain, method, mine, **body), "not on instance b______0")
    status, answer = rpc(
        plain,
        "put.v0.software_instance_connection_parameter",
        mine,
        instance_guid="a______0",
        connection_parameter_dict={"k": "v"},
    )
    assert status == 200, answer
    status, answer = rpc(
        plain,
        "post.v0.software_instance",
        mine,
        title="kid",
        software_release_uri="http://sr",
        software_type="default",
    )
    assert status == 200, answer
    status, answer = rpc(plain, "put.v0.software_instance_bang", None, instance_guid=b, message="x")
    assert status == 200, answer  # undeclared: a user


# ---- TLS: certificate names -----------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "", "admin", "COMP", "a/b/c", "COMP/", "computer:"])
def test_tls_any_other_name_is_refused(tls, name):
    client = as_peer(tls, name)
    _one_line_403(
        client.get("/getFullComputerInformation", computer_id="COMP"), "is not a SlapOS identity"
    )
    _one_line_403(
        client.get(
            "/getComputerPartitionCertificate",
            computer_id="COMP",
            computer_partition_id="slappart0",
        )
    )


def test_tls_a_user_has_full_access(tls):
    assert tls.get("/getFullComputerInformation", computer_id="COMP")[0] == 200
    assert (
        tls.post(
            "/softwareInstanceBang",
            computer_id="COMP",
            computer_partition_id="slappart1",
            message="m",
        )[0]
        == 200
    )
    assert rpc(tls, "allDocs.v0.instance_tree_list")[0] == 200


def test_tls_a_partition_acts_only_on_itself(tls):
    part = as_peer(tls, "COMP/slappart0")
    own: dict[str, Any] = {"computer_id": "COMP", "computer_partition_id": "slappart0"}
    other = {"computer_id": "COMP", "computer_partition_id": "slappart1"}
    assert part.get("/getComputerPartitionCertificate", **own)[0] == 200
    _one_line_403(part.get("/getComputerPartitionCertificate", **other), "not on partition")
    _one_line_403(part.get("/getFullComputerInformation", computer_id="COMP"), "may not call")
    _one_line_403(part.post("/setComputerPartitionConnectionXml", **publish("slappart1")))
    assert part.post("/setComputerPartitionConnectionXml", **publish("slappart0"))[0] == 200
    # requests children as itself: named in the form or the header, never as a user
    _one_line_403(part.request("kid"))
    assert part.request("kid", **own)[0] == 200
    assert part.request("kid2", headers=header("slappart0"))[0] == 200
    _one_line_403(part.request("kid3", headers=header("slappart1")), "may not act as")
    _one_line_403(rpc(part, "allDocs.v0.instance_tree_list"), "may not call")
    _one_line_403(
        rpc(
            part,
            "post.v0.software_instance",
            None,
            title="k",
            software_release_uri="http://sr",
            software_type="default",
        )
    )
    assert (
        rpc(part, "put.v0.software_instance_bang", None, instance_guid="a______0", message="m")[0]
        == 200
    )
    _one_line_403(
        rpc(part, "put.v0.software_instance_bang", None, instance_guid="b______0", message="m")
    )
    _one_line_403(part.get("/hateoas/"), "may not call")


def test_tls_a_computer_acts_only_on_itself_and_its_partitions(tls):
    node = as_peer(tls, "computer:COMP")
    other = {"computer_id": "OTHER", "computer_partition_id": "slappart0"}
    assert node.get("/getFullComputerInformation", computer_id="COMP")[0] == 200
    _one_line_403(node.get("/getFullComputerInformation", computer_id="OTHER"), "computer OTHER")
    assert (
        node.get(
            "/getComputerPartitionCertificate",
            computer_id="COMP",
            computer_partition_id="slappart1",
        )[0]
        == 200
    )
    _one_line_403(node.get("/getComputerPartitionCertificate", **other))
    assert (
        node.post(
            "/softwareInstanceError",
            header("slappart1"),
            computer_id="COMP",
            computer_partition_id="slappart1",
            message="m",
        )[0]
        == 200
    )
    _one_line_403(
        node.post("/softwareInstanceError", header("slappart0", "OTHER"), **other, message="m"),
        "may not act as partition OTHER/slappart0",
    )
    assert (
        node.post("/supplySupply", computer_id="COMP", url="http://sr", state="available")[0] == 200
    )
    _one_line_403(
        node.post("/supplySupply", computer_id="OTHER", url="http://sr", state="available")
    )
    computer = {"reference": "OTHER", "partition_list": []}
    _one_line_403(node.post("/loadComputerConfigurationFromXML", xml=dumps(computer)))
    _one_line_403(node.request("x"), "may not call /requestComputerPartition")
    _one_line_403(node.get("/hateoas/"), "may not call")
    _one_line_403(node.post("/shacache/x", body="x"), "may not upload")
    assert (
        rpc(node, "allDocs.v0.compute_node_software_installation_list", None, computer_guid="COMP")[
            0
        ]
        == 200
    )
    _one_line_403(
        rpc(node, "allDocs.v0.compute_node_software_installation_list", None, computer_guid="OTHER")
    )
    assert (
        rpc(node, "put.v0.software_instance_bang", None, instance_guid="b______0", message="m")[0]
        == 200
    )


# ---- revocation -----------------------------------------------------------------------------


def _issued_name(client: Client, path: str, **form: str) -> str:
    status, body = client.call("GET" if "Partition" in path else "POST", path, form)
    assert status == 200, body
    pem = loads(body)["certificate"].encode()
    cert = x509.load_pem_x509_certificate(pem)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_revoked_certificates_are_refused_and_reissued_under_a_new_name(tls, tmp_path):
    from slapos.cli.context import Context
    from slapos.cli.main import main

    part = {"computer_id": "COMP", "computer_partition_id": "slappart0"}
    name = _issued_name(tls, "/getComputerPartitionCertificate", **part)
    assert name == "COMP/slappart0"
    assert _issued_name(tls, "/getComputerPartitionCertificate", **part) == name  # stable
    node_name = _issued_name(tls, "/generateComputerCertificate", computer_id="COMP")
    assert node_name == "computer:COMP"
    assert as_peer(tls, name).get("/getComputerPartitionCertificate", **part)[0] == 200

    ctx = Context.for_test(tmp_path)
    database = tls.app.database
    assert main(["proxy", "revoke", "-u", database, "COMP/slappart0"], ctx=ctx) == 0
    assert ctx.stdout.getvalue() == "revoked COMP/slappart0\n"  # type: ignore[attr-defined]
    _one_line_403(
        as_peer(tls, name).get("/getComputerPartitionCertificate", **part),
        "certificate 'COMP/slappart0' has been revoked",
    )
    renewed = _issued_name(tls, "/getComputerPartitionCertificate", **part)
    assert renewed == "COMP/slappart0#1"
    assert as_peer(tls, renewed).get("/getComputerPartitionCertificate", **part)[0] == 200

    # Computer.revokeCertificate: the node's own certificate
    node = as_peer(tls, node_name)
    assert node.post("/revokeComputerCertificate", computer_id="COMP") == (200, "")
    _one_line_403(node.get("/getFullComputerInformation", computer_id="COMP"), "revoked")
    assert _issued_name(tls, "/generateComputerCertificate", computer_id="COMP") == (
        "computer:COMP#1"
    )

    # certificates made outside the proxy are revoked by name; the list shows them all
    assert as_peer(tls, "user:mallory").get("/getRunId")[0] == 200
    assert main(["proxy", "revoke", "-u", database, "user:mallory", "--list"], ctx=ctx) == 0
    listed = [line.split("\t")[0] for line in ctx.stdout.getvalue().splitlines()[1:]]  # type: ignore[attr-defined]
    assert listed == ["revoked user:mallory", "COMP/slappart0", "computer:COMP", "user:mallory"]
    _one_line_403(as_peer(tls, "user:mallory").get("/getRunId"), "revoked")
    assert main(["proxy", "revoke", "-u", database], ctx=ctx) == 2  # nothing to do: usage
