"""The node's network as data: links, addresses, routes, read from iproute2's JSON output.

The only module of slapos.format that looks at the network. It never parses `ip`'s text
output: every query uses `ip -j`. Commands that change the network are built as data in
plan.py and run by apply.py.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slapos.errors import SlapOSError
from slapos.system import Runner

log = logging.getLogger(__name__)

NONLOCAL_BIND = Path("/proc/sys/net/ipv6/ip_nonlocal_bind")


@dataclass(frozen=True)
class IfAddress:
    family: int  # 4 or 6
    addr: str
    prefixlen: int
    scope: str = "global"
    tentative: bool = False
    dadfailed: bool = False

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.addr}/{self.prefixlen}", strict=False)

    @property
    def is_global(self) -> bool:
        """Upstream's "global scope": not link-local, loopback, reserved, multicast."""
        ip = ipaddress.ip_address(self.addr)
        return not (
            ip.is_link_local
            or ip.is_loopback
            or ip.is_reserved
            or ip.is_multicast
            or ip.is_unspecified
        )


@dataclass(frozen=True)
class Link:
    name: str
    addresses: tuple[IfAddress, ...] = ()
    #: "tap"/"tun" for tun devices, else the kind iproute2 reports ("veth", "bridge", "").
    kind: str = ""
    #: owner of a tun/tap device, as iproute2 reports it (a user name or a uid), if any.
    owner: str | None = None

    @functools.cached_property
    def _canonical(self) -> frozenset[str]:
        return frozenset(str(ipaddress.ip_address(a.addr)) for a in self.addresses)

    def has(self, addr: str) -> bool:
        return str(ipaddress.ip_address(addr)) in self._canonical

    def global_ipv6(self) -> list[IfAddress]:
        return [a for a in self.addresses if a.family == 6 and a.is_global]


@dataclass(frozen=True)
class Route:
    dst: str
    dev: str
    via: str | None = None


@dataclass(frozen=True)
class NetworkState:
    links: Mapping[str, Link] = field(default_factory=dict)
    #: IPv6 networks of the "local" table routed to lo (partition ranges).
    local_routes6: frozenset[str] = frozenset()
    routes: frozenset[Route] = frozenset()
    nonlocal_bind: bool = False

    @functools.cached_property
    def _owners(self) -> dict[str, str]:
        owners: dict[str, str] = {}
        for link in self.links.values():
            for a in link.addresses:
                owners.setdefault(str(ipaddress.ip_address(a.addr)), link.name)
        return owners

    def owner_of(self, addr: str) -> str | None:
        """The link holding `addr`, if any."""
        return self._owners.get(str(ipaddress.ip_address(addr)))


def _ip_json(runner: Runner, *args: str) -> list[dict[str, object]]:
    done = runner.run(["ip", "-j", *args], timeout=30)
    if not done.ok:
        raise SlapOSError(
            f"cannot read the network configuration: ip {' '.join(args)}: "
            f"{done.tail(3) or 'exit ' + str(done.returncode)}"
        )
    text = done.output.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SlapOSError(f"unexpected output of ip -j {' '.join(args)}: {exc}") from None
    return [d for d in data if isinstance(d, dict)]


def _canonical_dst(dst: str, family: int) -> str:
    if dst == "default":
        return dst
    try:
        return str(ipaddress.ip_network(dst, strict=False))
    except ValueError:
        return dst


def parse_links(data: list[dict[str, object]]) -> dict[str, Link]:
    """`ip -j -d addr show` -> {name: Link}."""
    links: dict[str, Link] = {}
    for item in data:
        name = str(item.get("ifname", ""))
        if not name:
            continue
        addresses = []
        for info in item.get("addr_info", []) or []:  # type: ignore[attr-defined]
            if not isinstance(info, dict) or "local" not in info:
                continue
            family = 6 if info.get("family") == "inet6" else 4
            addresses.append(
                IfAddress(
                    family=family,
                    addr=str(info["local"]).split("%")[0],
                    prefixlen=int(info.get("prefixlen", 128 if family == 6 else 32)),
                    scope=str(info.get("scope", "global")),
                    tentative=bool(info.get("tentative")),
                    dadfailed=bool(info.get("dadfailed")),
                )
            )
        kind = ""
        owner = None
        linkinfo = item.get("linkinfo")
        if isinstance(linkinfo, dict):
            kind = str(linkinfo.get("info_kind", ""))
            data_ = linkinfo.get("info_data")
            if kind == "tun" and isinstance(data_, dict):
                kind = str(data_.get("type", "tun"))
                if "user" in data_:
                    owner = str(data_["user"])
        links[name] = Link(name, tuple(addresses), kind, owner)
    return links


def read_network(runner: Runner, *, sysctl_file: Path = NONLOCAL_BIND) -> NetworkState:
    """Links, addresses, routes and the non-local bind switch of this network namespace."""
    links = parse_links(_ip_json(runner, "-d", "addr", "show"))
    local6 = frozenset(
        _canonical_dst(str(r.get("dst")), 6)
        for r in _ip_json(runner, "-6", "route", "show", "table", "local")
        if r.get("dev") == "lo" and r.get("type") == "local"
    )
    routes = set()
    for family in ("-4", "-6"):
        for r in _ip_json(runner, family, "route", "show"):
            via = r.get("gateway")
            routes.add(
                Route(
                    _canonical_dst(str(r.get("dst")), 6 if family == "-6" else 4),
                    str(r.get("dev", "")),
                    str(via) if via else None,
                )
            )
    try:
        nonlocal_bind = sysctl_file.read_text().strip() == "1"
    except OSError:
        nonlocal_bind = False
    return NetworkState(links, local6, frozenset(routes), nonlocal_bind)
