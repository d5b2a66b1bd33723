"""https with client certificates: no certificate, no call; a partition's certificate acts
only on that partition; the proxy issues partition certificates when it holds the CA key
(the other identity rules: test_proxy_identity.py)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slapos.slap.marshal import dumps, loads
from tests.fixtures.common import free_port, wait_for
from tests.fixtures.proxy import request_form, start_proxy
from tests.fixtures.upstream import Upstream


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip


def _certificate(name: str, issuer_key: ec.EllipticCurvePrivateKey | None = None,
                 issuer: x509.Name | None = None, ca: bool = False, ip: str | None = None,
                 ) -> tuple[bytes, bytes]:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return make_pki(tmp_path)


def make_pki(tmp_path: Path) -> dict[str, Path]:
    """A CA (with its key), a server certificate for 127.0.0.1 and a user:admin one."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    files = {}
    d = tmp_path / "pki"
    d.mkdir()
    for name, data in (("ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM)),
                       ("ca.key", _key_pem(ca_key))):  # fmt: skip
        (d / name).write_bytes(data)
        files[name] = d / name
    for name, cn, ip in (("server", "proxy", "127.0.0.1"), ("user", "user:admin", None)):
        cert, key = _certificate(cn, ca_key, ca_name, ip=ip)
        (d / f"{name}.crt").write_bytes(cert)
        (d / f"{name}.key").write_bytes(key)
        files[f"{name}.crt"], files[f"{name}.key"] = d / f"{name}.crt", d / f"{name}.key"
    return files


def test_client_certificates(tmp_path: Path, pki: dict[str, Path], upstream: Upstream) -> None:
    port = free_port()
    gen = start_proxy(
        tmp_path / "proxy", port=port,
        extra_config=f"tls_certificate = {pki['server.crt']}\ntls_key = {pki['server.key']}\n"
        f"tls_ca = {pki['ca.crt']}\ntls_ca_key = {pki['ca.key']}\n",
    )  # fmt: skip
    proxy = next(gen)
    url = f"https://127.0.0.1:{port}"
    verify = str(pki["ca.crt"])
    user = (str(pki["user.crt"]), str(pki["user.key"]))
    try:
        wait_for(lambda: "serving https://" in proxy.log.read_text(), 30, "https proxy")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/getRunId", verify=verify, timeout=10)
        admin = requests.Session()
        admin.cert, admin.verify = user, verify
        admin.trust_env = False  # else $REQUESTS_CA_BUNDLE replaces our CA
        computer = {
            "reference": "local_computer", "address": "127.0.0.1", "netmask": "255.0.0.0",
            "partition_list": [{"reference": f"slappart{i}", "tap": {"name": "t"},
                                "address_list": []} for i in range(2)],
        }  # fmt: skip
        assert admin.post(f"{url}/loadComputerConfigurationFromXML",
                          data={"xml": dumps(computer)}, timeout=10).text == "done"  # fmt: skip
        for title in ("a", "b"):
            form = request_form(title, software_release="http://sr")
            assert admin.post(f"{url}/requestComputerPartition", data=form, timeout=10).ok
        answer = admin.get(
            f"{url}/getComputerPartitionCertificate",
            timeout=10,
            params={"computer_id": "local_computer", "computer_partition_id": "slappart0"},
        )
        issued = loads(answer.text)
        assert issued["certificate"].startswith("-----BEGIN CERTIFICATE-----")
        again = loads(
            admin.get(
                f"{url}/getComputerPartitionCertificate",
                timeout=10,
                params={"computer_id": "local_computer", "computer_partition_id": "slappart0"},
            ).text
        )
        assert again == issued  # stable: the node rewrites the files only on change
        (tmp_path / "p0.crt").write_text(issued["certificate"])
        (tmp_path / "p0.key").write_text(issued["key"])
        part = requests.Session()
        part.cert, part.verify = (str(tmp_path / "p0.crt"), str(tmp_path / "p0.key")), verify
        part.trust_env = False

        def register(partition: str) -> requests.Response:
            return part.get(
                f"{url}/registerComputerPartition",
                timeout=10,
                params={
                    "computer_reference": "local_computer",
                    "computer_partition_reference": partition,
                },
            )

        assert register("slappart0").status_code == 200
        denied = register("slappart1")
        assert denied.status_code == 403 and "may only act on itself" in denied.text
        assert (
            part.get(
                f"{url}/getFullComputerInformation",
                timeout=10,
                params={"computer_id": "local_computer"},
            ).status_code
            == 403
        )
        publish = {"computer_id": "local_computer", "connection_xml": dumps({"k": "v"})}
        assert (
            part.post(
                f"{url}/setComputerPartitionConnectionXml",
                timeout=10,
                data={**publish, "computer_partition_id": "slappart0"},
            ).text
            == "done"
        )
        assert (
            part.post(
                f"{url}/setComputerPartitionConnectionXml",
                timeout=10,
                data={**publish, "computer_partition_id": "slappart1"},
            ).status_code
            == 403
        )
        assert part.get(f"{url}/getRunId", timeout=10).status_code == 200
        # upstream's library over https with its certificate (it does not check ours)
        result = upstream.python_code(
            f"""
            import slapos.slap
            slap = slapos.slap.slap()
            slap.initializeConnection({url!r}, key_file={str(pki["user.key"])!r},
                                      cert_file={str(pki["user.crt"])!r})
            print(slap.registerOpenOrder().request("http://sr", "a").getId())
            """
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["slappart0"]
    finally:
        next(gen, None)
