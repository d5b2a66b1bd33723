"""node format, pure: (configuration, previous description, host state) -> (description, actions).

Nothing here touches the host. The caller reads the host into a `HostState` (apply.py,
netif.py), and gets back the new computer description and the ordered list of actions
that make the host match it. Only what differs is planned, so a second run on a formatted
node plans nothing. Randomness (local IPv4 addresses, upstream's fallback ranges) comes
from the `random.Random` passed in.

Must not import slapos.cli.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from slapos.format import addressing as ad
from slapos.format.actions import (
    Action,
    AddRoute,
    AddTuntap,
    DeleteRoute,
    SetLinkUp,
    SetSysctl,
    WriteFile,
)
from slapos.format.config import FormatConfig, FormatInputError
from slapos.format.model import (
    RESOURCE_FILE,
    Address,
    Computer,
    InterfaceSettings,
    Ipv6Range,
    Partition,
    User,
    VirtualInterface,
    dumps_json,
    dumps_xml,
)
from slapos.format.planner import (
    LOCAL_NETMASK,
    PARTITION_MODE,
    ROOT_MODE,
    FormatError,
    FormatPlan,
    HostState,
    PathEntry,
    Planner,
    UserEntry,
)

__all__ = [
    "Action",
    "FormatError",
    "FormatPlan",
    "HostState",
    "PathEntry",
    "UserEntry",
    "plan_format",
]


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
            f"{len(existing)} partitions are already formatted: partitions can only be added"
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
    if from_interface or config.alter_network:
        planner.base = _base_address(config, host, previous.address if previous else None)
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

    instance_root, software_root = str(config.instance_root), str(config.software_root)
    planner.ensure_dir(instance_root, ROOT_MODE, None, parents=True)
    planner.ensure_dir(software_root, ROOT_MODE, None, parents=True)
    if config.alter_user:
        planner.ensure_user(config.software_user, software_root, ())
        planner.ensure_owner(software_root, config.software_user)
    _plan_network_setup(planner, len(parts))
    pool = _tap_pool(planner, len(parts))
    done = [_plan_partition(planner, index, p, pool) for index, p in enumerate(parts)]
    if config.certificate_repository_path is not None:
        planner.ensure_dir(str(config.certificate_repository_path), 0o700, None, parents=True)

    base = planner.base
    if from_interface:
        address, netmask = (str(base.addr), base.netmask) if base else (None, None)
    else:
        address, netmask = (previous.address, previous.netmask) if previous else (None, None)
    computer = Computer(
        reference=config.computer_id,
        software_root=software_root,
        instance_root=instance_root,
        interface=InterfaceSettings(
            name=config.interface_name or "",
            ipv4_local_network=str(config.ipv4_local_network)
            if config.ipv4_local_network
            else None,
            ipv6_interface=config.ipv6_interface_name or "",
            ipv6_prefixshift=config.ipv6_prefixshift,
        )
        if config.interface_name and from_interface
        else None,
        partition_list=tuple(done),
        address=address,
        netmask=netmask,
        ipv6_interface=config.ipv6_interface,
        partition_has_ipv6_range=config.partition_has_ipv6_range,
        software_user=config.software_user,
        tap_gateway_interface=config.tap_gateway_interface,
        tap_ipv6=config.tap_ipv6,
        instance_storage_home=str(config.instance_storage_home)
        if config.instance_storage_home
        else None,
        os_type=host.os_type,
        python_version=host.python_version,
        slapos_version=host.slapos_version,
    )
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


def _tap_pool(planner: Planner, count: int) -> tuple[list[str], str, str, str] | None:
    """(addresses, netmask, gateway, network) for taps, from tap_gateway_interface."""
    config = planner.config
    if not (config.alter_network and config.create_tap and config.tap_gateway_interface):
        return None
    link = planner.host.network.links[config.tap_gateway_interface]
    v4 = [a for a in link.addresses if a.family == 4]
    if not v4:
        raise FormatError(f"{config.tap_gateway_interface} has no IPv4 address to share with taps")
    first = v4[0]
    net = ipaddress.IPv4Network(f"{first.addr}/{first.prefixlen}", strict=False)
    return (
        ad.tap_pool(first.addr, first.prefixlen, count),
        str(net.netmask),
        first.addr,
        str(net.network_address),
    )


def _plan_partition(
    planner: Planner,
    index: int,
    partition: Partition,
    pool: tuple[list[str], str, str, str] | None,
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
        partition = _plan_partition_network(planner, index, partition, owner, pool)
    planner.ensure_dir(path, PARTITION_MODE, user.name if config.alter_user else None)
    for extra in storage:
        planner.ensure_dir(extra, PARTITION_MODE, user.name if config.alter_user else None)
    return partition


def _plan_partition_network(
    planner: Planner,
    index: int,
    partition: Partition,
    owner: str,
    pool: tuple[list[str], str, str, str] | None,
) -> Partition:
    config = planner.config
    if config.create_tap:
        partition = replace(partition, tap=_plan_tap(planner, index, partition.tap, owner, pool))
    if partition.tun is not None:
        partition = replace(partition, tun=_plan_tun(planner, index, partition.tun, owner))
    partition = replace(partition, address_list=_plan_addresses(planner, index, partition))
    if config.partition_has_ipv6_range:
        rng = partition.ipv6_range
        if rng is None:
            v6 = planner.range_for(index, ad.PARTITION_RANGE)
            rng = Ipv6Range(str(v6.addr), v6.netmask, f"{v6.addr}/{v6.prefixlen}", v6.prefixlen)
        network = str(ipaddress.ip_network(rng.network, strict=False))
        if network not in planner.host.network.local_routes6:
            planner.actions.append(AddRoute(rng.network, "lo", local=True))
        partition = replace(partition, ipv6_range=rng)
    else:
        partition = replace(partition, ipv6_range=None)
    return partition


def _create_virtual(planner: Planner, name: str, mode: str, owner: str) -> None:
    link = planner.host.network.links.get(name)
    if link is None:
        planner.actions.append(AddTuntap(name, mode, owner))
        planner.actions.append(SetLinkUp(name))
        return
    user = planner.host.users.get(owner)
    if link.owner is not None and link.owner not in (owner, str(user.uid) if user else owner):
        planner.warnings.append(
            f"{mode} {name} belongs to {link.owner}, not {owner}: leaving it alone"
        )


def _plan_tap(
    planner: Planner,
    index: int,
    tap: VirtualInterface,
    owner: str,
    pool: tuple[list[str], str, str, str] | None,
) -> VirtualInterface:
    _create_virtual(planner, tap.name, "tap", owner)
    if pool is not None:
        addresses, netmask, gateway, network = pool
        candidate = addresses[index]  # one pool entry per partition, used or not (upstream)
        if not tap.ipv4_addr:
            tap = replace(
                tap,
                ipv4_addr=candidate,
                ipv4_netmask=netmask,
                ipv4_gateway=gateway,
                ipv4_network=network,
            )
    else:
        tap = replace(tap, ipv4_addr="", ipv4_netmask="", ipv4_gateway="", ipv4_network="")
    if planner.config.tap_ipv6:
        assert planner.base is not None
        if not tap.ipv6_addr:
            v6 = planner.range_for(index, ad.TAP_RANGE)
            tap = replace(tap, ipv6_addr=str(v6.addr), ipv6_netmask=v6.netmask)
        else:
            planner.take(
                str(
                    ad.V6(
                        ipaddress.IPv6Address(tap.ipv6_addr), ad.prefixlen6(tap.ipv6_netmask)
                    ).network
                )
            )
        if not planner.link_has(tap.name, tap.ipv6_addr):
            planner.ensure_address(
                tap.ipv6_addr, ad.prefixlen6(tap.ipv6_netmask), tap.name, tap=True
            )
        prefixlen = planner.base.prefixlen + 16  # upstream hard-codes 16 here
        gateway = ad.first_address(tap.ipv6_addr, prefixlen)
        tap = replace(tap, ipv6_gateway=gateway, ipv6_network=f"{gateway}/{prefixlen}")
    else:
        tap = replace(tap, ipv6_addr="", ipv6_netmask="", ipv6_gateway="", ipv6_network="")
    if tap.ipv4_addr and not planner.has_route(tap.ipv4_addr, tap.name):
        planner.actions.append(AddRoute(tap.ipv4_addr, tap.name, family=4))
    if tap.ipv6_network:
        if not planner.has_route(tap.ipv6_gateway, tap.name):
            planner.actions.append(AddRoute(tap.ipv6_gateway, tap.name))
        if not planner.has_route(tap.ipv6_network, tap.name, tap.ipv6_gateway):
            if planner.has_route(tap.ipv6_network, tap.name):
                planner.actions.append(DeleteRoute(tap.ipv6_network, tap.name))
            planner.actions.append(AddRoute(tap.ipv6_network, tap.name, via=tap.ipv6_gateway))
    return tap


def _plan_tun(planner: Planner, index: int, tun: VirtualInterface, owner: str) -> VirtualInterface:
    config = planner.config
    _create_virtual(planner, tun.name, "tun", owner)
    if not tun.ipv4_addr:
        addr, netmask, network = ad.tun_subnet(index, max(config.partition_amount, 1))
        tun = replace(tun, ipv4_addr=addr, ipv4_netmask=netmask, ipv4_network=network)
    if config.tun_ipv6 and not tun.ipv6_addr:
        v6 = planner.range_for(index, ad.TUN_RANGE)
        first = ad.first_address(str(v6.addr), v6.prefixlen)
        tun = replace(
            tun, ipv6_addr=first, ipv6_netmask=v6.netmask, ipv6_network=f"{first}/{v6.prefixlen}"
        )
    if tun.ipv4_addr and not planner.link_has(tun.name, tun.ipv4_addr):
        planner.ensure_address(tun.ipv4_addr, ad.prefixlen4(tun.ipv4_netmask), tun.name)
    if tun.ipv6_addr and not planner.link_has(tun.name, tun.ipv6_addr):
        planner.ensure_address(tun.ipv6_addr, ad.prefixlen6(tun.ipv6_netmask), tun.name)
    return tun


def _plan_addresses(planner: Planner, index: int, partition: Partition) -> tuple[Address, ...]:
    config = planner.config
    v4_dev = config.interface_name or ""
    v6_dev = config.ipv6_interface_name or ""
    old = partition.address_list
    if not old:
        v4 = planner.new_local_ipv4()
        planner.ensure_address(v4, 32, v4_dev)
        v6 = planner.partition_ipv6(index)
        planner.ensure_address(str(v6.addr), v6.prefixlen, v6_dev)
        return (Address(v4, LOCAL_NETMASK), Address(str(v6.addr), v6.netmask))
    if len(old) != 2 or sum(a.is_ipv6 for a in old) != 1:
        raise FormatError(
            f"{partition.reference}: the computer description must hold exactly one IPv4 and "
            f"one IPv6 address, not {[a.addr for a in old]}"
        )
    result = []
    for address in old:
        if address.is_ipv6:
            result.append(_keep_ipv6(planner, index, address, v6_dev))
        elif planner.ensure_address(address.addr, 32, v4_dev):
            result.append(Address(address.addr, LOCAL_NETMASK))
        else:
            v4 = planner.new_local_ipv4()
            planner.ensure_address(v4, 32, v4_dev)
            result.append(Address(v4, LOCAL_NETMASK))
    return tuple(result)


def _keep_ipv6(planner: Planner, index: int, address: Address, dev: str) -> Address:
    """A stored partition IPv6 stays if it is (or can be put) on the interface's network."""
    base = planner.base
    assert base is not None
    if planner.link_has(dev, address.addr):
        return Address(address.addr, address.netmask)
    try:
        inside = (
            ipaddress.IPv6Address(address.addr) in base.network
            and ad.prefixlen6(address.netmask) == base.prefixlen
        )
    except ValueError:
        inside = False
    if inside and planner.ensure_address(address.addr, base.prefixlen, dev):
        return Address(address.addr, address.netmask)
    planner.warnings.append(f"cannot keep IPv6 {address.addr}: choosing a new one")
    v6 = planner.partition_ipv6(index)
    planner.ensure_address(str(v6.addr), v6.prefixlen, dev)
    return Address(str(v6.addr), v6.netmask)
