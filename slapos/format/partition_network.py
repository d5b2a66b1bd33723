"""node format, pure: what each partition gets on the network (plan.py's per-partition step).

Its two addresses (a local IPv4, an IPv6 of the interface's prefix), its IPv6 range, its tap
(addresses, routes, shared IPv4 pool) and tun, each kept from the previous description when
it is still valid, and the actions that put them on the host. Decisions go through plan.py's
`Planner`, which holds the run's taken addresses and the host as read.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import TYPE_CHECKING

from slapos.format import addressing as ad
from slapos.format.actions import AddRoute, AddTuntap, DeleteRoute, SetLinkUp
from slapos.format.config import FormatError
from slapos.format.model import Address, Ipv6Range, Partition, VirtualInterface

if TYPE_CHECKING:
    from slapos.format.plan import Planner

LOCAL_NETMASK = "255.255.255.255"
#: (addresses, netmask, gateway, network) the taps share, from tap_gateway_interface
TapPool = tuple[list[str], str, str, str]


def tap_pool(planner: Planner, count: int) -> TapPool | None:
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


def plan_partition_network(
    planner: Planner,
    index: int,
    partition: Partition,
    owner: str,
    pool: TapPool | None,
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
    pool: TapPool | None,
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
