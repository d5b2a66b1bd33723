"""node format, pure: (configuration, previous description, host state) -> (description, actions).

Nothing here touches the host. The caller reads the host into a `HostState` (host.py, read
by apply.py and netif.py), and gets back the new computer description and the ordered list
of actions that make the host match it. Only what differs is planned, so a second run on a
formatted node plans nothing. Randomness (local IPv4 addresses, upstream's fallback ranges)
comes from the `random.Random` passed in.

`Planner` holds a run's state and makes the elementary decisions (ensure a user, a
directory, a file, an address; pick free addresses and ranges); `plan_format` and the
functions after it decide what the computer and each partition get.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

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
    SetSysctl,
    WriteFile,
)
from slapos.format.config import FormatConfig, FormatError, FormatInputError
from slapos.format.host import HostState
from slapos.format.model import (
    RESOURCE_FILE,
    Computer,
    InterfaceSettings,
    Partition,
    User,
    VirtualInterface,
    dumps_json,
    dumps_xml,
)
from slapos.format.netif import Route
from slapos.format.partition_network import TapPool, plan_partition_network, tap_pool
from slapos.wording import counted

ROOT_MODE = 0o755
PARTITION_MODE = 0o750


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


def _base_address(config: FormatConfig, host: HostState, preferred: str | None) -> ad.V6 | None:
    name = config.ipv6_interface_name
    link = host.network.links.get(name or "")
    if link is None:
        return None
    candidates = [ad.V6(ipaddress.IPv6Address(a.addr), a.prefixlen) for a in link.global_ipv6()]
    return ad.choose_base(candidates, preferred)


def _check_interfaces(config: FormatConfig, host: HostState) -> None:
    if not config.alter_network:
        return
    links = host.network.links
    for what, name in (
        ("interface_name", config.interface_name),
        ("ipv6_interface", config.ipv6_interface),
        ("tap_gateway_interface", config.tap_gateway_interface or None),
    ):
        if name and name not in links:
            raise FormatInputError(
                f"{config.path}: [slapformat] {what}: there is no network interface "
                f"{name!r} on this host (have: {', '.join(sorted(links)) or 'none'})"
            )


def _check_user_clash(
    config: FormatConfig, host: HostState, partitions: Sequence[Partition], known: set[str]
) -> None:
    """A partition user that exists but belongs to something else: refuse before acting."""
    if not config.alter_user:
        return
    for partition in partitions:
        entry = host.users.get(partition.user.name)
        if entry is None or partition.user.name in known:
            continue
        if entry.home != partition.path:
            raise FormatInputError(
                f"{config.path}: [slapformat] user_base_name {config.user_base_name!r}: user "
                f"{entry.name!r} already exists (home {entry.home}) and is not a partition "
                "user of this node: choose another user_base_name"
            )


def _new_partition(config: FormatConfig, index: int) -> Partition:
    reference = config.partition_reference(index)
    return Partition(
        reference=reference,
        path=str(config.instance_root / reference),
        user=User(config.partition_user(index)),
        tap=VirtualInterface(f"{config.tap_base_name}{index}"),
        tun=VirtualInterface(f"slaptun{index}") if config.create_tun else None,
    )


def initial_partitions(config: FormatConfig, previous: Computer | None) -> list[Partition]:
    """Partitions already described, plus new ones up to partition_amount."""
    existing = list(previous.partition_list) if previous else []
    if config.partition_amount < len(existing):
        raise FormatInputError(
            f"{config.path}: [slapformat] partition_amount is {config.partition_amount} but "
            f"{counted(len(existing), 'partition is', 'partitions are')} already formatted: "
            "partitions can only be added"
        )
    for index in range(len(existing), config.partition_amount):
        existing.append(_new_partition(config, index))
    if config.create_tun:
        existing = [
            p if p.tun else replace(p, tun=VirtualInterface(f"slaptun{i}"))
            for i, p in enumerate(existing)
        ]
    return existing


def plan_format(
    config: FormatConfig,
    previous: Computer | None,
    host: HostState,
    rng: random.Random,
    *,
    partitions: Sequence[Partition] | None = None,
) -> FormatPlan:
    """Compute the new computer description and the actions that realise it.

    `partitions` replaces the partitions of `previous` (input definition file).
    """
    _check_interfaces(config, host)
    parts = list(partitions) if partitions is not None else initial_partitions(config, previous)
    known_users = {p.user.name for p in previous.partition_list} if previous else set()
    _check_user_clash(config, host, parts, known_users)
    planner = Planner(config, host, rng)
    # Upstream reads the node's address from its interface, except for a definition file
    # without network changes: then the file's [computer] address is the node's address.
    from_interface = partitions is None or bool(
        config.alter_network and config.interface_name and config.ipv4_local_network
    )
    _choose_base(planner, previous, parts, from_interface)

    planner.ensure_dir(str(config.instance_root), ROOT_MODE, None, parents=True)
    planner.ensure_dir(str(config.software_root), ROOT_MODE, None, parents=True)
    if config.alter_user:
        planner.ensure_user(config.software_user, str(config.software_root), ())
        planner.ensure_owner(str(config.software_root), config.software_user)
    _plan_network_setup(planner, len(parts))
    pool = tap_pool(planner, len(parts))
    done = [_plan_partition(planner, index, p, pool) for index, p in enumerate(parts)]
    if config.certificate_repository_path is not None:
        planner.ensure_dir(str(config.certificate_repository_path), 0o700, None, parents=True)

    if from_interface:
        base = planner.base
        address, netmask = (str(base.addr), base.netmask) if base else (None, None)
    else:
        address, netmask = (previous.address, previous.netmask) if previous else (None, None)
    computer = _computer(config, host, done, address, netmask, from_interface)
    for partition in done:
        planner.ensure_file(
            str(Path(partition.path) / RESOURCE_FILE), partition.resource_json().encode()
        )
    _plan_computer_xml(planner, computer)
    if config.computer_json is not None:
        planner.ensure_file(str(config.computer_json), dumps_json(computer).encode())
    bare = [p.reference for p in done if not p.address_list]
    if bare:
        planner.warnings.append(
            f"alter_network is false: {', '.join(bare)} have no address (node format gives "
            "addresses only when it configures them; list them in input_definition_file)"
        )
    return FormatPlan(computer, tuple(planner.actions), tuple(planner.warnings))


def _choose_base(
    planner: Planner, previous: Computer | None, parts: Sequence[Partition], from_interface: bool
) -> None:
    """The interface's IPv6 network partitions take addresses from; what is given stays."""
    config = planner.config
    if from_interface or config.alter_network:
        planner.base = _base_address(config, planner.host, previous.address if previous else None)
    if config.alter_network and planner.base is None:
        raise FormatError(
            f"{config.ipv6_interface_name} must have at least one global IPv6 address "
            "(partitions take theirs from its prefix)"
        )
    for p in parts:  # addresses already given out are not given again
        for a in p.address_list:
            planner.take(a.addr)
        if p.ipv6_range:
            planner.take(str(ipaddress.ip_network(p.ipv6_range.network, strict=False)))


def _computer(
    config: FormatConfig,
    host: HostState,
    partitions: Sequence[Partition],
    address: str | None,
    netmask: str | None,
    from_interface: bool,
) -> Computer:
    """The computer description the plan ends with (computer_xml, and what the master gets)."""
    interface = None
    if config.interface_name and from_interface:
        interface = InterfaceSettings(
            name=config.interface_name,
            ipv4_local_network=str(config.ipv4_local_network)
            if config.ipv4_local_network
            else None,
            ipv6_interface=config.ipv6_interface_name or "",
            ipv6_prefixshift=config.ipv6_prefixshift,
        )
    storage = config.instance_storage_home
    return Computer(
        reference=config.computer_id,
        software_root=str(config.software_root),
        instance_root=str(config.instance_root),
        interface=interface,
        partition_list=tuple(partitions),
        address=address,
        netmask=netmask,
        ipv6_interface=config.ipv6_interface,
        partition_has_ipv6_range=config.partition_has_ipv6_range,
        software_user=config.software_user,
        tap_gateway_interface=config.tap_gateway_interface,
        tap_ipv6=config.tap_ipv6,
        instance_storage_home=str(storage) if storage else None,
        os_type=host.os_type,
        python_version=host.python_version,
        slapos_version=host.slapos_version,
    )


def _plan_computer_xml(planner: Planner, computer: Computer) -> None:
    """computer_xml, and its history `<computer_xml>.zip` (dated copies of each version).

    Upstream rewrites the file when it changed or when the archive is missing, putting the
    file it replaces in the archive first. Ours also archives the very first version, so
    that the history exists from the first run and a second run changes nothing.
    """
    xml = str(planner.config.computer_xml)
    archive = f"{xml}.zip"
    content = dumps_xml(computer)
    if planner.host.files.get(xml) != content or archive not in planner.host.paths:
        planner.actions.append(WriteFile(xml, content, 0o644, archive))


def _plan_network_setup(planner: Planner, count: int) -> None:
    config = planner.config
    if not config.alter_network:
        return
    if config.partition_has_ipv6_range and count and not planner.host.network.nonlocal_bind:
        planner.actions.append(SetSysctl("net.ipv6.ip_nonlocal_bind", "1"))


def _plan_partition(
    planner: Planner,
    index: int,
    partition: Partition,
    pool: TapPool | None,
) -> Partition:
    config = planner.config
    software_user = config.software_user
    path = str(config.instance_root / partition.reference)
    user = User(partition.user.name, path, (software_user,))
    storage = tuple(f"{d}/{partition.reference}" for d in planner.host.storage_dirs)
    partition = replace(partition, path=path, user=user, external_storage_list=storage)
    if config.alter_user:
        planner.ensure_user(user.name, path, (software_user,))
    owner = user.name if config.alter_user or user.name in planner.host.users else "root"
    if config.alter_network:  # else addresses stay as they are (none for new partitions)
        partition = plan_partition_network(planner, index, partition, owner, pool)
    planner.ensure_dir(path, PARTITION_MODE, user.name if config.alter_user else None)
    for extra in storage:
        planner.ensure_dir(extra, PARTITION_MODE, user.name if config.alter_user else None)
    return partition
