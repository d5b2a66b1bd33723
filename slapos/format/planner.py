"""node format's planning state: what the host looks like, and the primitive decisions.

`HostState` is the host as plan.py sees it; `Planner` accumulates actions and warnings and
makes the elementary decisions (ensure a user, a directory, a file, an address; pick free
addresses and ranges). Pure: nothing here touches the host.

Must not import slapos.cli.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from slapos.errors import SlapOSError
from slapos.format import addressing as ad
from slapos.format.actions import (
    Action,
    AddAddress,
    AddGroup,
    AddUser,
    ChangeMode,
    ChangeOwner,
    LockPassword,
    MakeDir,
    ModifyUser,
    WriteFile,
)
from slapos.format.config import FormatConfig
from slapos.format.model import Computer
from slapos.format.netif import NetworkState, Route

LOCAL_NETMASK = "255.255.255.255"
ROOT_MODE = 0o755
PARTITION_MODE = 0o750


class FormatError(SlapOSError):
    """The node cannot be formatted as configured (exit 1)."""


@dataclass(frozen=True)
class UserEntry:
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PathEntry:
    uid: int
    gid: int
    mode: int  # permission bits only


@dataclass(frozen=True)
class HostState:
    """What plan_format needs to know about the host."""

    users: Mapping[str, UserEntry] = field(default_factory=dict)
    groups: Mapping[str, int] = field(default_factory=dict)
    paths: Mapping[str, PathEntry] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    network: NetworkState = field(default_factory=NetworkState)
    storage_dirs: tuple[str, ...] = ()
    os_type: str | None = None
    python_version: str | None = None
    slapos_version: str | None = None


@dataclass(frozen=True)
class FormatPlan:
    computer: Computer
    actions: tuple[Action, ...]
    warnings: tuple[str, ...] = ()


@dataclass
class Planner:
    config: FormatConfig
    host: HostState
    rng: random.Random
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: addresses and IPv6 networks given out during this run
    taken: set[str] = field(default_factory=set)
    base: ad.V6 | None = None

    # ---- users and directories -----------------------------------------------------

    def ensure_user(self, name: str, home: str, groups: tuple[str, ...]) -> None:
        if name not in self.host.groups:
            self.actions.append(AddGroup(name))
        entry = self.host.users.get(name)
        if entry is None:
            self.actions.append(AddUser(name, home, groups))
            self.actions.append(LockPassword(name))
            return
        gid = self.host.groups.get(name)
        if (
            entry.home != home
            or entry.shell != "/bin/sh"
            or gid is None
            or entry.gid != gid
            or not set(groups) <= entry.groups
        ):
            self.actions.append(ModifyUser(name, home, groups))
            self.actions.append(LockPassword(name))

    def ensure_dir(self, path: str, mode: int, owner: str | None, parents: bool = False) -> None:
        entry = self.host.paths.get(path)
        if entry is None:
            self.actions.append(MakeDir(path, mode, parents))
        elif entry.mode != mode:
            self.actions.append(ChangeMode(path, mode))
        self.ensure_owner(path, owner)

    def ensure_owner(self, path: str, owner: str | None) -> None:
        entry = self.host.paths.get(path)
        if owner is not None:
            user = self.host.users.get(owner)
            gid = self.host.groups.get(owner)
            if entry is None or user is None or (entry.uid, entry.gid) != (user.uid, gid):
                self.actions.append(ChangeOwner(path, owner, owner))

    def ensure_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        if self.host.files.get(path) != content:
            self.actions.append(WriteFile(path, content, mode))

    # ---- network -------------------------------------------------------------------

    def link_has(self, dev: str, addr: str) -> bool:
        link = self.host.network.links.get(dev)
        return bool(link and link.has(addr))

    def ensure_address(self, addr: str, prefixlen: int, dev: str, *, tap: bool = False) -> bool:
        """Plan adding addr to dev; False when another link already holds it."""
        owner = self.host.network.owner_of(addr)
        if owner == dev:
            return True
        if owner is not None:
            self.warnings.append(f"cannot add {addr} to {dev}: it is already on {owner}")
            return False
        self.actions.append(AddAddress(f"{addr}/{prefixlen}", dev, noprefixroute=tap))
        return True

    def has_route(self, dst: str, dev: str, via: str | None = None) -> bool:
        canonical = str(ipaddress.ip_network(dst, strict=False))
        return Route(canonical, dev, via) in self.host.network.routes

    def free(self, addr: str) -> bool:
        return addr not in self.taken and self.host.network.owner_of(addr) is None

    def take(self, key: str) -> None:
        self.taken.add(key)

    def new_local_ipv4(self) -> str:
        network = self.config.ipv4_local_network
        assert network is not None
        size = network.num_addresses
        for _ in range(10):
            if size > 2:
                candidate = network.network_address + self.rng.randrange(1, size - 1)
            else:
                candidate = network.network_address + self.rng.randrange(size)
            text = str(candidate)
            if self.free(text):
                self.take(text)
                return text
        raise ad.AddressGenerationError(
            f"no free IPv4 address found in {network} after 10 tries: choose a larger "
            "ipv4_local_network"
        )

    def partition_ipv6(self, index: int) -> ad.V6:
        assert self.base is not None
        wanted = ad.partition_address(self.base, index)
        dev = self.config.ipv6_interface_name or ""
        if str(wanted.addr) not in self.taken and self.host.network.owner_of(str(wanted.addr)) in (
            None,
            dev,
        ):
            self.take(str(wanted.addr))
            return wanted
        self.fallback_allowed(f"{wanted.addr} for partition {index}")
        for _ in range(10):
            value = int(wanted.addr) & ~0xFFFF | self.rng.randint(1, 65000)
            candidate = ad.V6(ipaddress.IPv6Address(value), wanted.prefixlen)
            if self.free(str(candidate.addr)):
                self.take(str(candidate.addr))
                return candidate
        raise ad.AddressGenerationError(f"no free IPv6 address for partition {index}")

    def range_for(self, index: int, kind: int) -> ad.V6:
        assert self.base is not None
        wanted = ad.subrange(self.base, index, self.config.ipv6_prefixshift, kind)
        if str(wanted.network) not in self.taken:
            self.take(str(wanted.network))
            return wanted
        self.fallback_allowed(f"{wanted.network} for partition {index}")
        for _ in range(10):
            candidate = ad.random_subrange(
                self.base, self.rng.randint(1, 65000), kind == ad.TAP_RANGE
            )
            if str(candidate.network) not in self.taken:
                self.take(str(candidate.network))
                return candidate
        raise ad.AddressGenerationError(f"no free IPv6 range for partition {index}")

    def fallback_allowed(self, what: str) -> None:
        if self.config.ipv6_prefixshift != 16:
            raise ad.AddressGenerationError(
                f"{what} is already taken (random fallback needs ipv6_prefixshift = 16)"
            )
        self.warnings.append(f"{what} is already taken: choosing one at random")
