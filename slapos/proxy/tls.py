"""Optional https with client certificates for the proxy.

With `tls_certificate`/`tls_key` set, the proxy speaks https, keep-alive included (see
slapos.proxy.server). With `tls_ca` set, every call must present a
certificate signed by that CA, and its subject common name decides what it may do:

* `<computer_id>/<partition_id>`: a partition; it may act only on that partition's data
  (its own description, certificate, connection parameters, requests made as itself,
  bang, rename, status reports), nothing else;
* anything else: a user or node of this master, full access.

With `tls_ca_key` also set, getComputerPartitionCertificate issues each partition a
certificate of that form (kept in the database, so the node sees a stable answer).

Must not import slapos.cli.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from typing import TYPE_CHECKING, Any

from slapos.proxy.service import Forbidden
from slapos.proxy.wsgi import PEER_KEY

if TYPE_CHECKING:
    from slapos.proxy.app import Request
    from slapos.proxy.config import TLSConfig

log = logging.getLogger(__name__)

#: legacy routes a partition certificate may call, and the fields naming the partition
_PARTITION_ROUTES = {
    "/registerComputerPartition": ("computer_reference", "computer_partition_reference"),
    "/getComputerPartitionCertificate": ("computer_id", "computer_partition_id"),
    "/getHostingSubscriptionIpList": ("computer_id", "computer_partition_id"),
    "/setComputerPartitionConnectionXml": ("computer_id", "computer_partition_id"),
    "/softwareInstanceError": ("computer_id", "computer_partition_id"),
    "/softwareInstanceBang": ("computer_id", "computer_partition_id"),
    "/softwareInstanceRename": ("computer_id", "computer_partition_id"),
    "/startedComputerPartition": ("computer_id", "computer_partition_id"),
    "/stoppedComputerPartition": ("computer_id", "computer_partition_id"),
    "/destroyedComputerPartition": ("computer_id", "computer_partition_id"),
    "/updateComputerPartitionRelatedInstanceList": ("computer_id", "computer_partition_id"),
    "/requestComputerPartition": ("computer_id", "computer_partition_id"),
}
_ANYONE = frozenset({"/getHateoasUrl", "/getRunId", "/getSoftwareReleaseListFromSoftwareProduct"})


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.certificate), str(tls.key))
    if tls.ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(tls.ca))
    return context


def partition_of(common_name: str | None) -> tuple[str, str] | None:
    """`COMP/slappart0` -> ("COMP", "slappart0"); other names are not partitions."""
    if not common_name or common_name.count("/") != 1:
        return None
    computer_id, partition_id = common_name.split("/")
    return (computer_id, partition_id) if computer_id and partition_id else None


def authorize(request: Request) -> None:
    """Refuse (403) what a partition certificate may not do; others pass."""
    owner = partition_of(request.environ.get(PEER_KEY))
    if owner is None or request.path in _ANYONE:
        return
    fields = _PARTITION_ROUTES.get(request.path)
    if fields is None:
        raise Forbidden(f"a partition certificate ({'/'.join(owner)}) may not call {request.path}")
    header = request.partition_header()
    named = (request.form.get(fields[0]), request.form.get(fields[1]))
    if request.path == "/requestComputerPartition" and header is not None:
        named = header
    if named != owner:
        raise Forbidden(
            f"the certificate of {'/'.join(owner)} may only act on that partition, "
            f"not on {named[0]}/{named[1]}"
        )


def issue_certificate(ca_certificate: bytes, ca_key: bytes, common_name: str) -> tuple[str, str]:
    """A client certificate for `common_name` signed by the CA: (certificate, key) PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    issuer = x509.load_pem_x509_certificate(ca_certificate)
    signer: Any = serialization.load_pem_private_key(ca_key, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()
