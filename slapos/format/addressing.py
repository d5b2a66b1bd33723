"""Upstream's address arithmetic, pure: partition IPv6 addresses and ranges, tun subnets.

With P the prefix length of the interface's network and n = ipv6_prefixshift:

* partition i gets the address <prefix>::(i + 2) (::1 is left to re6st), wrapping around
  when the host part is too small;
* its ranges have prefix length P + n, whose n subnet bits are (k << (n - 2)) + i + 1 with
  k = 1 for the partition range, 2 for the tap range (host bits all ones), 3 for the tun
  range;
* tun i gets the i-th of 2**ceil(log2(amount)) subnets of 172.16.0.0/12.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from slapos.errors import SlapOSError

PARTITION_RANGE, TAP_RANGE, TUN_RANGE = 1, 2, 3
TUN_BASE = ipaddress.IPv4Network("172.16.0.0/12")


class AddressGenerationError(SlapOSError):
    """No free address or range could be found."""


@dataclass(frozen=True)
class V6:
    """An IPv6 address with the prefix length of the network it belongs to."""

    addr: ipaddress.IPv6Address
    prefixlen: int

    @property
    def netmask(self) -> str:
        return netmask6(self.prefixlen)

    @property
    def network(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(f"{self.addr}/{self.prefixlen}", strict=False)


def netmask6(prefixlen: int) -> str:
    """64 -> 'ffff:ffff:ffff:ffff::' (upstream stores IPv6 netmasks this way)."""
    return str(ipaddress.IPv6Network(f"::/{prefixlen}").netmask)


def prefixlen6(netmask: str) -> int:
    """'ffff:ffff:ffff:ffff::' (or 'ffff::/16', or '64') -> prefix length."""
    text = netmask.split("/")[-1] if "/" in netmask else netmask
    if text.isdigit():
        return int(text)
    value = int(ipaddress.IPv6Address(text))
    ones = 128 - (value ^ ((1 << 128) - 1)).bit_length()
    if value != ((1 << 128) - 1) ^ ((1 << (128 - ones)) - 1):
        raise ValueError(f"{netmask!r} is not an IPv6 netmask")
    return ones


def prefixlen4(netmask: str) -> int:
    return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen


def choose_base(candidates: list[V6], preferred: str | None = None) -> V6 | None:
    """The interface address partitions derive from (upstream's Interface.getAddress).

    With a preferred address (the one stored in the computer description), the lowest
    interface address whose network contains it; otherwise the one with the shortest prefix,
    ties broken by the lowest address.
    """
    if not candidates:
        return None
    if preferred:
        try:
            wanted = ipaddress.IPv6Address(preferred)
        except ValueError:
            wanted = None
        if wanted is not None:
            fitting = [c for c in candidates if wanted in c.network]
            if fitting:
                return min(fitting, key=lambda c: c.addr)
    return min(candidates, key=lambda c: (c.prefixlen, c.addr))


def partition_address(base: V6, index: int) -> V6:
    """<prefix>::(index + 2), wrapping around in small networks."""
    remaining = 128 - base.prefixlen
    host = index + 2
    if host.bit_length() > remaining:
        if remaining >= 2:
            host = index % ((1 << remaining) - 2) + 2
        else:
            host &= (1 << remaining) - 1
    prefix = int(base.network.network_address)
    return V6(ipaddress.IPv6Address(prefix | host), base.prefixlen)


def subrange(base: V6, index: int, shift: int, kind: int) -> V6:
    """The partition (kind 1), tap (2) or tun (3) range of partition `index`."""
    prefixlen = base.prefixlen + shift
    if prefixlen >= 128:
        raise AddressGenerationError(
            f"the IPv6 network {base.network} is too small for ranges of /{prefixlen}: "
            "lower ipv6_prefixshift or use a larger prefix"
        )
    sub = ((kind << (shift - 2)) + index + 1) & ((1 << shift) - 1)
    host_bits = 128 - prefixlen
    value = int(base.network.network_address) | (sub << host_bits)
    if kind == TAP_RANGE:
        value |= (1 << host_bits) - 1
    return V6(ipaddress.IPv6Address(value), prefixlen)


def random_subrange(base: V6, value: int, ones: bool) -> V6:
    """Upstream's fallback: a random 16-bit subnet (value in 1..65000)."""
    prefixlen = base.prefixlen + 16
    if prefixlen >= 128:
        raise AddressGenerationError(f"the IPv6 network {base.network} is too small")
    host_bits = 128 - prefixlen
    addr = int(base.network.network_address) | (value << host_bits)
    if ones:
        addr |= (1 << host_bits) - 1
    return V6(ipaddress.IPv6Address(addr), prefixlen)


def first_address(addr: str, prefixlen: int) -> str:
    """The first host of the network of `addr`/`prefixlen` (a tap's gateway)."""
    net = ipaddress.IPv6Network(f"{addr}/{prefixlen}", strict=False)
    return str(net.network_address + 1)


def tun_subnet(index: int, amount: int) -> tuple[str, str, str]:
    """(address, netmask, upstream's 'address/netmask' network string) of tun `index`."""
    shift = math.ceil(math.log2(amount)) if amount > 1 else 0
    subnets = TUN_BASE.subnets(prefixlen_diff=shift)
    for position, subnet in enumerate(subnets):
        if position == index:
            first = str(subnet.network_address + 1)
            return first, str(subnet.netmask), f"{first}/{subnet.netmask}"
    raise AddressGenerationError(f"no tun subnet for partition {index} of {amount}")


def tap_pool(addr: str, prefixlen: int, count: int) -> list[str]:
    """The first `count` tap IPv4 addresses: the gateway interface's subnet minus its network
    address, its broadcast address and the gateway itself (upstream kept the broadcast)."""
    net = ipaddress.IPv4Network(f"{addr}/{prefixlen}", strict=False)
    pool: list[str] = []
    for host in net.hosts():
        if len(pool) == count:
            break
        if str(host) != addr:
            pool.append(str(host))
    if len(pool) < count:
        raise AddressGenerationError(
            f"cannot give {count} taps an IPv4 address from {net} (gateway {addr})"
        )
    return pool
