from __future__ import annotations

import ipaddress

import pytest

from slapos.format import addressing as ad


def base(text: str = "2001:db8:1:2::1", prefixlen: int = 64) -> ad.V6:
    return ad.V6(ipaddress.IPv6Address(text), prefixlen)


def test_partition_address_is_index_plus_two():
    assert str(ad.partition_address(base(), 0).addr) == "2001:db8:1:2::2"
    assert str(ad.partition_address(base(), 9).addr) == "2001:db8:1:2::b"


def test_partition_address_wraps_in_a_small_network():
    small = base("2001:db8::1", 126)  # 4 addresses: ::0..::3, 0 and 1 reserved
    assert [str(ad.partition_address(small, i).addr) for i in range(4)] == [
        "2001:db8::2",
        "2001:db8::3",
        "2001:db8::2",
        "2001:db8::3",
    ]


def test_ranges_follow_upstream_arithmetic():
    b = base()
    assert str(ad.subrange(b, 0, 16, ad.PARTITION_RANGE).network) == "2001:db8:1:2:4001::/80"
    tap = ad.subrange(b, 0, 16, ad.TAP_RANGE)
    assert (str(tap.addr), tap.prefixlen) == ("2001:db8:1:2:8001:ffff:ffff:ffff", 80)
    assert str(ad.subrange(b, 0, 16, ad.TUN_RANGE).network) == "2001:db8:1:2:c001::/80"
    assert str(ad.subrange(b, 5, 16, ad.PARTITION_RANGE).addr) == "2001:db8:1:2:4006::"
    assert ad.first_address(str(tap.addr), 80) == "2001:db8:1:2:8001::1"


def test_range_too_small_is_an_error():
    with pytest.raises(ad.AddressGenerationError, match="too small"):
        ad.subrange(base("2001:db8::1", 120), 0, 16, ad.PARTITION_RANGE)


def test_netmask_conversions():
    assert ad.netmask6(64) == "ffff:ffff:ffff:ffff::"
    assert ad.prefixlen6("ffff:ffff:ffff:ffff::") == 64
    assert ad.prefixlen6("ffff::/16") == 16
    assert ad.prefixlen6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == 128
    assert ad.prefixlen4("255.255.255.255") == 32
    with pytest.raises(ValueError):
        ad.prefixlen6("ffff:0:ffff::")


def test_choose_base_prefers_the_largest_network_then_lowest_address():
    candidates = [base("2001:db8:1:2::9", 64), base("2001:db8:1:2::5", 64), base("2001:db9::1", 48)]
    largest = ad.choose_base(candidates)
    assert largest is not None and str(largest.addr) == "2001:db9::1"
    chosen = ad.choose_base(candidates, preferred="2001:db8:1:2::7")
    assert chosen is not None and str(chosen.addr) == "2001:db8:1:2::5"
    assert ad.choose_base([]) is None


def test_tun_subnets_split_172_16_by_partition_count():
    assert ad.tun_subnet(0, 10) == ("172.16.0.1", "255.255.0.0", "172.16.0.1/255.255.0.0")
    assert ad.tun_subnet(1, 10)[0] == "172.17.0.1"
    assert ad.tun_subnet(0, 1) == ("172.16.0.1", "255.240.0.0", "172.16.0.1/255.240.0.0")


def test_tap_pool_skips_network_gateway_and_broadcast():
    assert ad.tap_pool("192.168.1.1", 30, 1) == ["192.168.1.2"]
    with pytest.raises(ad.AddressGenerationError):
        ad.tap_pool("192.168.1.1", 30, 2)
