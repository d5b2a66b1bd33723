"""FormatConfig: [slapformat] and [slapos] of slapos.cfg, merged with the command line.

Upstream loads [slapformat] first and [slapos] on top of it, so a key present in both
sections takes the [slapos] value; command-line values win over both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slapos.config import IniFile, MasterAccess, parse_int
from slapos.errors import ConfigError, SlapOSError

#: Options that used to manage a bridge; any value is refused (upstream does the same).
OBSOLETE_KEYS = ("bridge_name", "no_bridge")


class FormatInputError(ConfigError):
    """Bad input for node format (exit 1, as upstream: 2 means "offline" for this command)."""


class FormatError(SlapOSError):
    """The node cannot be formatted as configured (exit 1)."""


@dataclass(frozen=True)
class FormatConfig:
    """Everything `slapos node format` reads from its configuration and command line."""

    path: Path
    computer_id: str
    master_url: str
    instance_root: Path
    software_root: Path
    computer_xml: Path
    partition_amount: int
    interface_name: str | None = None
    ipv6_interface: str | None = None
    ipv4_local_network: ipaddress.IPv4Network | None = None
    partition_base_name: str = "slappart"
    user_base_name: str = "slapuser"
    tap_base_name: str = "slaptap"
    software_user: str = "slapsoft"
    computer_json: Path | None = None
    input_definition_file: Path | None = None
    output_definition_file: Path | None = None
    create_tap: bool = True
    tap_ipv6: bool = True
    tap_gateway_interface: str = ""
    create_tun: bool = False
    tun_ipv6: bool = True
    ipv6_prefixshift: int = 16
    partition_has_ipv6_range: bool = True
    alter_user: bool = True
    alter_network: bool = True
    dry_run: bool = False
    root_check: bool = True
    key_file: Path | None = None
    cert_file: Path | None = None
    master_ca_file: Path | None = None
    master_tls_verify: bool = True
    certificate_repository_path: Path | None = None
    instance_storage_home: Path | None = None
    log_file: Path | None = None

    @property
    def ipv6_interface_name(self) -> str | None:
        """The interface whose global IPv6 prefix partitions use."""
        return self.ipv6_interface or self.interface_name

    def partition_reference(self, index: int) -> str:
        return f"{self.partition_base_name}{index}"

    def partition_user(self, index: int) -> str:
        return f"{self.user_base_name}{index}"

    @property
    def master(self) -> MasterAccess:
        """The node's master; its key and certificate only as a pair (as upstream)."""
        pair = self.key_file is not None and self.cert_file is not None
        return MasterAccess(
            self.master_url,
            key_file=str(self.key_file) if pair else None,
            cert_file=str(self.cert_file) if pair else None,
            ca_file=str(self.master_ca_file) if self.master_ca_file else None,
            tls_verify=self.master_tls_verify,
        )


_BOOL_KEYS = (
    "create_tap",
    "tap_ipv6",
    "create_tun",
    "tun_ipv6",
    "partition_has_ipv6_range",
    "alter_user",
    "alter_network",
    "root_check",
    "master_tls_verify",
)
_DEFAULT_TRUE = {
    "master_tls_verify",
    "create_tap",
    "tap_ipv6",
    "tun_ipv6",
    "partition_has_ipv6_range",
    "alter_user",
    "alter_network",
    "root_check",
}


@dataclass
class _Reader:
    """[slapformat] under [slapos] under the command line, with error messages naming keys."""

    ini: IniFile
    given: Mapping[str, Any]

    def __post_init__(self) -> None:
        self.merged = {**self.ini.section("slapformat"), **self.ini.section("slapos")}

    def where(self, key: str) -> str:
        section = "slapos" if key in self.ini.section("slapos") else "slapformat"
        return f"{self.ini.path}: [{section}] {key}"

    def text(self, key: str) -> str | None:
        if key in self.given:
            return str(self.given[key])
        value = self.merged.get(key)
        return value.strip() if value is not None and value.strip() else None

    def path(self, key: str) -> Path | None:
        value = self.text(key)
        return Path(value).expanduser().absolute() if value else None

    def boolean(self, key: str) -> bool:
        if key in self.given:
            return bool(self.given[key])
        value = self.text(key)
        if value is None:
            return key in _DEFAULT_TRUE
        lowered = value.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise FormatInputError(f"{self.where(key)} must be true or false, got {value!r}")

    def amount(self) -> int:
        text = self.text("partition_amount")
        if text is None:
            raise FormatInputError(f"{self.where('partition_amount')} is not defined")
        try:
            amount = int(text)
        except ValueError:
            raise FormatInputError(
                f"{self.where('partition_amount')} must be a whole number, got {text!r}"
            ) from None
        if amount < 0:
            raise FormatInputError(f"{self.where('partition_amount')} must not be negative")
        return amount

    def network(self) -> ipaddress.IPv4Network | None:
        text = self.text("ipv4_local_network")
        if text is None:
            return None
        try:
            return ipaddress.IPv4Network(text, strict=False)
        except ValueError as exc:
            raise FormatInputError(
                f"{self.where('ipv4_local_network')} is not an IPv4 network such as "
                f"10.0.0.0/16: {text!r} ({exc})"
            ) from None

    def shift(self, amount: int) -> int:
        text = self.text("ipv6_prefixshift")
        shift = parse_int(text, self.where("ipv6_prefixshift")) if text else 16
        if shift < 2 or (1 << shift) < 4 * amount:
            # each partition needs 4 sub-ranges: address, range, tap and tun
            raise FormatInputError(
                f"{self.where('ipv6_prefixshift')} {shift} is too small for partition_amount "
                f"{amount}"
            )
        return shift

    def check(self) -> None:
        for key in OBSOLETE_KEYS:
            if self.text(key):
                raise FormatInputError(
                    f"{self.where(key)} is obsolete (bridges are no longer managed): remove it"
                )
        for key in ("computer_id", "master_url", "instance_root", "software_root", "computer_xml"):
            if self.text(key) is None:
                raise FormatInputError(f"{self.where(key)} is not defined")


def load_format_config(ini: IniFile, overrides: Mapping[str, Any] | None = None) -> FormatConfig:
    """Build the FormatConfig; raise FormatInputError naming the key on bad input."""
    where = ini.path
    for section in ("slapos", "slapformat"):
        if not ini.has_section(section):
            raise FormatInputError(f"{where}: missing section [{section}]")
    r = _Reader(ini, {k: v for k, v in (overrides or {}).items() if v is not None})
    r.check()
    amount = r.amount()
    network = r.network()
    shift = r.shift(amount)
    values = {key: r.boolean(key) for key in _BOOL_KEYS}
    config = FormatConfig(
        path=where,
        computer_id=r.text("computer_id") or "",
        master_url=r.text("master_url") or "",
        instance_root=r.path("instance_root") or Path("/srv/slapgrid"),
        software_root=r.path("software_root") or Path("/opt/slapgrid"),
        computer_xml=r.path("computer_xml") or Path("/opt/slapos/slapos.xml"),
        partition_amount=amount,
        interface_name=r.text("interface_name"),
        ipv6_interface=r.text("ipv6_interface"),
        ipv4_local_network=network,
        partition_base_name=r.text("partition_base_name") or "slappart",
        user_base_name=r.text("user_base_name") or "slapuser",
        tap_base_name=r.text("tap_base_name") or "slaptap",
        software_user=r.text("software_user") or "slapsoft",
        computer_json=r.path("computer_json"),
        input_definition_file=r.path("input_definition_file"),
        output_definition_file=r.path("output_definition_file"),
        tap_gateway_interface=r.text("tap_gateway_interface") or "",
        ipv6_prefixshift=shift,
        key_file=r.path("key_file"),
        cert_file=r.path("cert_file"),
        master_ca_file=r.path("master_ca_file"),
        certificate_repository_path=r.path("certificate_repository_path"),
        instance_storage_home=r.path("instance_storage_home"),
        log_file=r.path("log_file"),
        dry_run=bool(r.given.get("dry_run")),
        **values,
    )
    for key in ("key_file", "cert_file", "master_ca_file"):
        file = getattr(config, key)
        if file is not None and not file.exists():
            raise FormatInputError(f"{r.where(key)}: {file} does not exist")
    for key in ("interface_name", "ipv4_local_network"):
        if config.alter_network and getattr(config, key) is None:
            raise FormatInputError(f"{r.where(key)} is not defined")
    return config
