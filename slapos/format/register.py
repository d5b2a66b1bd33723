"""`slapos node register`: get a certificate from the master's web side, write the node's
configuration directory.

The exchange (upstream's): POST <master-url-web>/Person_requestComputer with the form
field `title` (the node name) and the header `X-Access-Token`; the answer is JSON holding
`certificate` and `key`. The computer id is the `COMP-...` text of the certificate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from slapos.errors import MasterError, SlapOSError
from slapos.format.templates import NodeSettings, node_config, public_networkcache
from slapos.system import write_file_atomic

log = logging.getLogger(__name__)

REQUEST_COMPUTER = "Person_requestComputer"
TIMEOUT = 60.0
_READ_TRAVERSE = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH


@dataclass(frozen=True)
class Registration:
    node_name: str
    token: str
    master_url: str
    master_url_web: str
    config_dir: Path
    interface_name: str = "lo"
    ipv6_interface: str | None = None
    partition_number: int = 10
    ipv4_local_network: str = "10.0.0.0/16"
    software_root: str = "/opt/slapgrid"
    instance_root: str = "/srv/slapgrid"
    create_tap: bool = False
    dry_run: bool = False
    #: False: the master's web side is not checked (warned about)
    master_tls_verify: bool = True


def request_certificate(
    master_url_web: str, node_name: str, token: str, verify: bool = True
) -> tuple[str, str]:
    """Ask the master's web side for this node's certificate and key.

    Its certificate is checked against the system's trust store (upstream never checks
    it, and the token it sends is the credential)."""
    import requests
    import urllib3

    url = f"{master_url_web.rstrip('/')}/{REQUEST_COMPUTER}"
    log.debug("POST %s title=%s", url, node_name)
    if not verify and url.startswith("https"):
        log.warning("--no-master-tls-verify: the certificate of %s is not checked", url)
    with warnings_off(urllib3.exceptions.InsecureRequestWarning):
        try:
            answer = requests.post(
                url,
                data={"title": node_name},
                headers={"X-Access-Token": token},
                verify=verify,
                timeout=TIMEOUT,
            )
        except requests.exceptions.SSLError:
            raise MasterError(
                f"the certificate of {url} could not be verified against the system's trust "
                "store (--no-master-tls-verify skips the check, for a test master only)"
            ) from None
        except requests.RequestException as exc:
            raise MasterError(f"cannot reach {url}: {exc}") from None
    if not answer.ok and "Certificate still active." in answer.text:
        raise MasterError(
            f'the node name "{node_name}" is already in use: change the name, or revoke the '
            "active certificate if you want to replace the node"
        )
    if answer.status_code == 403:
        raise MasterError(
            "access denied by the SlapOS master: check the token or ask for a new one"
        )
    if not answer.ok:
        raise MasterError(f"{url} answered HTTP {answer.status_code} {answer.reason}")
    try:
        data = json.loads(answer.text)
        certificate, key = str(data["certificate"]), str(data["key"])
    except (ValueError, KeyError, TypeError):
        raise MasterError(f"{url} did not answer a certificate and a key") from None
    return certificate, key


@contextlib.contextmanager
def warnings_off(category: type[Warning]):  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield


def computer_id_of(certificate: str) -> str:
    """The COMP-... name a master puts in the certificates it issues."""
    start = certificate.find("COMP-")
    end = certificate.find("/email", start)
    if start < 0:
        raise MasterError("the certificate from the master names no computer (no COMP-...)")
    return certificate[start:end] if end > start else certificate[start:].split()[0]


def backup_directory(directory: Path) -> Path | None:
    """Move an existing configuration directory aside: <dir>.old, <dir>.old.1, ..."""
    if not (directory / "slapos.cfg").exists():
        return None
    target = directory.with_name(directory.name + ".old")
    counter = 0
    while target.exists():
        counter += 1
        target = directory.with_name(f"{directory.name}.old.{counter}")
    log.info("former slapos configuration found in %s: moving it to %s", directory, target)
    shutil.move(directory, target)
    return target


def open_ancestors(directory: Path) -> None:
    """Partition users must read the node configuration: ancestors get g+rx,o+rx."""
    for parent in directory.parents:
        if parent == parent.parent:
            break
        with contextlib.suppress(FileNotFoundError):
            mode = parent.stat().st_mode
            if mode & _READ_TRAVERSE != _READ_TRAVERSE:
                try:
                    os.chmod(parent, mode | _READ_TRAVERSE)
                except PermissionError:
                    log.warning("cannot make %s readable by partition users", parent)


def write_configuration(reg: Registration, computer_id: str, certificate: str, key: str) -> Path:
    """Write <dir>/slapos.cfg, <dir>/ssl/{key,certificate}, <dir>/ssl/partition_pki."""
    directory = reg.config_dir
    backup_directory(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    open_ancestors(directory)
    ssl = directory / "ssl"
    pki = ssl / "partition_pki"
    for path in (directory, ssl, pki):
        path.mkdir(mode=0o711, exist_ok=True)
        os.chmod(path, 0o711)
    key_file, cert_file = ssl / "key", ssl / "certificate"
    write_file_atomic(key_file, key, 0o600)
    write_file_atomic(cert_file, certificate, 0o600)
    settings = NodeSettings(
        computer_id=computer_id,
        master_url=reg.master_url,
        software_root=reg.software_root,
        instance_root=reg.instance_root,
        interface_name=reg.interface_name,
        ipv6_interface=reg.ipv6_interface,
        ipv4_local_network=reg.ipv4_local_network,
        partition_amount=reg.partition_number,
        computer_xml="/opt/slapos/slapos.xml",
        format_log_file="/opt/slapos/log/slapos-node-format.log",
        create_tap=reg.create_tap,
        key_file=str(key_file),
        cert_file=str(cert_file),
        certificate_repository_path=str(pki),
        networkcache=public_networkcache(),
    )
    header = (
        f"SlapOS node {reg.node_name} ({computer_id}), registered with {reg.master_url}\n"
        f"by `slapos node register` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    config = directory / "slapos.cfg"
    write_file_atomic(config, node_config(settings, header), 0o644)
    return config


def register(reg: Registration) -> str:
    """Register the node; return its computer id. In dry-run, say what would be done."""
    if reg.dry_run:
        log.info(
            "dry run: would ask %s/%s for a certificate for %r",
            reg.master_url_web,
            REQUEST_COMPUTER,
            reg.node_name,
        )
        if (reg.config_dir / "slapos.cfg").exists():
            log.info("dry run: would move %s aside", reg.config_dir)
        log.info(
            "dry run: would write %s/slapos.cfg and %s/ssl/{key,certificate}",
            reg.config_dir,
            reg.config_dir,
        )
        return "COMP-?"
    certificate, key = request_certificate(
        reg.master_url_web, reg.node_name, reg.token, reg.master_tls_verify
    )
    computer_id = computer_id_of(certificate)
    try:
        path = write_configuration(reg, computer_id, certificate, key)
    except OSError as exc:
        raise SlapOSError(
            f"cannot write the node configuration in {reg.config_dir}: {exc.strerror or exc}"
        ) from None
    log.info("SlapOS configuration written to %s", path)
    return computer_id
