"""Optional https with client certificates for the proxy.

With `tls_certificate`/`tls_key` set, the proxy speaks https, keep-alive included (see
slapos.proxy.server). With `tls_ca` set, every call must present a certificate signed by
that CA, and its subject common name decides what it may do (slapos.proxy.identity).

With `tls_ca_key` also set, getComputerPartitionCertificate and
generateComputerCertificate issue partition and computer certificates named as
slapos.proxy.identity expects (kept in the database, so the node sees a stable answer).
"""

from __future__ import annotations

import datetime
import logging
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slapos.proxy.config import TLSConfig

log = logging.getLogger(__name__)


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.certificate), str(tls.key))
    if tls.ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(tls.ca))
    return context


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
