"""The computer description node format keeps and publishes.

A `Computer` holds its partitions (user, directory, addresses, IPv6 range, tap, tun). It is
stored as upstream stores it: an xml_marshaller document of a plain dictionary
(`computer_xml`, pretty-printed; written and read with `slapos.slap.marshal`), optionally a
JSON twin (`computer_json`), one `.slapos-resource` JSON file per partition, and the INI
"computer definition" files (`-i` / `-o`). The dictionaries keep upstream's keys so that
masters, and nodes of both implementations, read each other's files.

Pure data and (de)serialisation; file writing happens in apply.py.
"""

from __future__ import annotations

import configparser
import io
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slapos.config import check_duplicate_keys
from slapos.errors import ConfigError

RESOURCE_FILE = ".slapos-resource"
SHELL = "/bin/sh"


@dataclass(frozen=True)
class Address:
    addr: str
    netmask: str

    def to_dict(self) -> dict[str, str]:
        return {"addr": self.addr, "netmask": self.netmask}

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.addr


@dataclass(frozen=True)
class Ipv6Range:
    addr: str
    netmask: str
    network: str
    prefixlen: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_IF_FIELDS = (
    "ipv4_addr",
    "ipv4_netmask",
    "ipv4_gateway",
    "ipv4_network",
    "ipv6_addr",
    "ipv6_netmask",
    "ipv6_gateway",
    "ipv6_network",
)


@dataclass(frozen=True)
class VirtualInterface:
    """A tap (or tun) interface of a partition, with the addresses routed to it."""

    name: str
    ipv4_addr: str = ""
    ipv4_netmask: str = ""
    ipv4_gateway: str = ""
    ipv4_network: str = ""
    ipv6_addr: str = ""
    ipv6_netmask: str = ""
    ipv6_gateway: str = ""
    ipv6_network: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VirtualInterface:
        return cls(name=str(data["name"]), **{k: str(data.get(k) or "") for k in _IF_FIELDS})


@dataclass(frozen=True)
class User:
    name: str
    path: str | None = None
    additional_group_list: tuple[str, ...] | None = None
    shell: str = SHELL

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "shell": self.shell,
            "additional_group_list": (
                None if self.additional_group_list is None else list(self.additional_group_list)
            ),
        }
        if self.path is not None:
            data["path"] = self.path
        return data


@dataclass(frozen=True)
class Partition:
    reference: str
    path: str
    user: User
    tap: VirtualInterface
    address_list: tuple[Address, ...] = ()
    ipv6_range: Ipv6Range | None = None
    tun: VirtualInterface | None = None
    external_storage_list: tuple[str, ...] = ()
    capability_list: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "reference": self.reference,
            "path": self.path,
            "user": self.user.to_dict(),
            "address_list": [a.to_dict() for a in self.address_list],
            "ipv6_range": self.ipv6_range.to_dict() if self.ipv6_range else {},
            "tap": self.tap.to_dict(),
            "tun": self.tun.to_dict() if self.tun else None,
            "external_storage_list": list(self.external_storage_list),
        }
        if self.capability_list is not None:
            data["capability_list"] = list(self.capability_list)
        return data

    def resource_json(self) -> str:
        """The content of <partition>/.slapos-resource (sorted keys, indent 4, as upstream)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=4)

    @property
    def ipv4(self) -> Address | None:
        return next((a for a in self.address_list if not a.is_ipv6), None)

    @property
    def ipv6(self) -> Address | None:
        return next((a for a in self.address_list if a.is_ipv6), None)


@dataclass(frozen=True)
class InterfaceSettings:
    """What upstream serialises of its Interface object."""

    name: str
    ipv4_local_network: str | None
    ipv6_interface: str
    ipv6_prefixshift: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Computer:
    reference: str
    software_root: str
    instance_root: str
    interface: InterfaceSettings | None = None
    partition_list: tuple[Partition, ...] = ()
    address: str | None = None
    netmask: str | None = None
    ipv6_interface: str | None = None
    partition_has_ipv6_range: bool | None = None
    software_user: str = "slapsoft"
    tap_gateway_interface: str | None = None
    tap_ipv6: bool | None = None
    instance_storage_home: str | None = None
    public_ipv4_address: str | None = None
    os_type: str | None = None
    python_version: str | None = None
    slapos_version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The dictionary upstream marshals (same keys, same nesting)."""
        return {
            "reference": self.reference,
            "interface": self.interface.to_dict() if self.interface else None,
            "partition_list": [p.to_dict() for p in self.partition_list],
            "address": self.address,
            "netmask": self.netmask,
            "ipv6_interface": self.ipv6_interface,
            "partition_has_ipv6_range": self.partition_has_ipv6_range,
            "software_user": self.software_user,
            "tap_gateway_interface": self.tap_gateway_interface,
            "tap_ipv6": self.tap_ipv6,
            "software_root": self.software_root,
            "instance_root": self.instance_root,
            "instance_storage_home": self.instance_storage_home,
            "public_ipv4_address": self.public_ipv4_address,
            "os_type": self.os_type,
            "python_version": self.python_version,
            "slapos_version": self.slapos_version,
        }


# ---- XML / JSON ----------------------------------------------------------------------


_TOKEN = re.compile(r"<[^>]*>|[^<]+")


def pretty_xml(document: str) -> bytes:
    """A compact marshalled document laid out as upstream writes computer_xml.

    Upstream re-parses the document and pretty-prints it with lxml: one element per line,
    two spaces per level, `<tag/>` for an element without text, a final newline. The
    marshalled document has no whitespace between elements, so this is a matter of
    re-indenting its tokens; the text is kept byte for byte (`&#13;` stays escaped).
    """
    tokens = _TOKEN.findall(document)
    lines: list[str] = []
    depth, i = 0, 0
    while i < len(tokens):
        token = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token.startswith("</"):
            depth -= 1
            lines.append("  " * depth + token)
        elif token.endswith("/>"):
            lines.append("  " * depth + token)
        elif nxt.startswith("</"):  # <string></string>: no text
            lines.append("  " * depth + token[:-1] + "/>")
            i += 1
        elif not nxt.startswith("<") and nxt:  # a leaf and its text
            lines.append("  " * depth + token + nxt + tokens[i + 2])
            i += 2
        else:
            lines.append("  " * depth + token)
            depth += 1
        i += 1
    return ("\n".join(lines) + "\n").encode("ascii")


def dumps_xml(computer: Computer) -> bytes:
    """The marshalled, pretty-printed computer_xml content (what upstream writes)."""
    return pretty_xml(marshal(computer))


def marshal(computer: Computer) -> str:
    """The compact marshalled form posted to the master."""
    from slapos.slap import marshal as codec

    return codec.dumps(computer.to_dict())


def dumps_json(computer: Computer) -> str:
    return json.dumps(computer.to_dict(), sort_keys=True, indent=2)


def loads_xml(data: bytes, where: Path | str) -> dict[str, Any]:
    """Parse a computer_xml document (refusing anything but plain data)."""
    from slapos.slap import marshal as codec

    if b"<object" in data:
        raise ConfigError(f"{where}: refusing to load a computer description holding objects")
    try:
        loaded = codec.loads(data)
    except codec.MarshalError as exc:
        raise ConfigError(f"{where}: not a valid computer description: {exc}") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("partition_list", []), list):
        raise ConfigError(f"{where}: not a valid computer description")
    return loaded


def partition_from_dict(data: Mapping[str, Any], where: Path | str) -> Partition:
    try:
        user_data = data.get("user") or {"name": "root"}
        groups = user_data.get("additional_group_list")
        user = User(
            name=str(user_data["name"]),
            path=user_data.get("path"),
            additional_group_list=None if groups is None else tuple(groups),
        )
        tap_data = data.get("tap")
        tap = (
            VirtualInterface.from_dict(tap_data)
            if tap_data
            else VirtualInterface(str(data["reference"]))
        )
        tun_data = data.get("tun")
        rng = data.get("ipv6_range") or {}
        ipv6_range = None
        if rng:
            ipv6_range = Ipv6Range(
                addr=str(rng["addr"]),
                netmask=str(rng["netmask"]),
                network=str(rng.get("network") or f"{rng['addr']}/{rng['prefixlen']}"),
                prefixlen=int(rng["prefixlen"]),
            )
        caps = data.get("capability_list")
        return Partition(
            reference=str(data["reference"]),
            path=str(data["path"]),
            user=user,
            tap=tap,
            address_list=tuple(
                Address(str(a["addr"]), str(a["netmask"]).split("/")[0])
                for a in data.get("address_list") or []
            ),
            ipv6_range=ipv6_range,
            tun=VirtualInterface.from_dict(tun_data) if tun_data else None,
            external_storage_list=tuple(data.get("external_storage_list") or ()),
            capability_list=None if caps is None else tuple(caps),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: malformed partition entry ({exc!r})") from None


def computer_from_dict(data: Mapping[str, Any], where: Path | str) -> Computer:
    """Rebuild a Computer from upstream's dictionary (XML or JSON)."""
    netmask = data.get("netmask")
    return Computer(
        reference=str(data.get("reference") or ""),
        software_root=str(data.get("software_root") or ""),
        instance_root=str(data.get("instance_root") or ""),
        partition_list=tuple(
            partition_from_dict(p, where) for p in data.get("partition_list") or []
        ),
        address=data.get("address"),
        netmask=netmask.split("/")[0] if isinstance(netmask, str) else None,
        software_user=str(data.get("software_user") or "slapsoft"),
        public_ipv4_address=data.get("public_ipv4_address"),
    )


# ---- definition files (INI) ----------------------------------------------------------


def read_definition(
    text: str, where: Path | str, amount: int
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Parse a computer definition file: ([computer] values, one dict per partition)."""
    check_duplicate_keys(text, where)
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=str(where))
    except configparser.Error as exc:
        raise ConfigError(f"{where}: not a valid definition file: {exc}") from None
    computer = dict(parser.items("computer")) if parser.has_section("computer") else {}
    partitions: list[dict[str, Any]] = []
    for index in range(amount):
        section = f"partition_{index}"
        if not parser.has_section(section):
            raise ConfigError(f"{where}: missing section [{section}]")
        values = dict(parser.items(section))
        for key in ("address", "user", "network_interface", "pathname"):
            if key not in values:
                raise ConfigError(f"{where}: [{section}] {key} is missing")
        partitions.append(values)
    return computer, partitions


def write_definition(computer: Computer) -> str:
    """The output definition file (-o): what -i reads back."""
    parser = configparser.RawConfigParser()
    parser.add_section("computer")
    if computer.address and computer.netmask:
        parser.set("computer", "address", f"{computer.address}/{computer.netmask}")
    for index, partition in enumerate(computer.partition_list):
        section = f"partition_{index}"
        parser.add_section(section)
        parser.set(
            section, "address", " ".join(f"{a.addr}/{a.netmask}" for a in partition.address_list)
        )
        if partition.ipv6_range is not None:
            parser.set(section, "ipv6_range", partition.ipv6_range.network)
        parser.set(section, "user", partition.user.name)
        parser.set(section, "network_interface", partition.tap.name)
        parser.set(section, "pathname", partition.reference)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()
