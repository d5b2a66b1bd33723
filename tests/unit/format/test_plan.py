"""The formatter's plan, against simulated hosts: no process, no root."""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from slapos.format import actions as act
from slapos.format.config import FormatConfig, FormatError, FormatInputError
from slapos.format.host import HostState, PathEntry, UserEntry
from slapos.format.model import RESOURCE_FILE, computer_from_dict, loads_xml
from slapos.format.netif import IfAddress, Link, NetworkState, Route
from slapos.format.plan import plan_format


def make_config(tmp_path: Path, **kw) -> FormatConfig:
    values: dict[str, Any] = {
        "path": tmp_path / "slapos.cfg",
        "computer_id": "COMP-1",
        "master_url": "http://127.0.0.1:1",
        "instance_root": tmp_path / "srv",
        "software_root": tmp_path / "opt",
        "computer_xml": tmp_path / "slapos.xml",
        "partition_amount": 2,
        "interface_name": "eth0",
        "ipv4_local_network": ipaddress.IPv4Network("10.0.0.0/16"),
        "create_tap": False,
    }
    values.update(kw)
    return FormatConfig(**values)


def fresh_host() -> HostState:
    eth0 = Link("eth0", (IfAddress(6, "2001:db8:1:2::1", 64), IfAddress(6, "fe80::1", 64, "link")))
    lo = Link("lo", (IfAddress(4, "127.0.0.1", 8, "host"), IfAddress(6, "::1", 128, "host")))
    return HostState(
        users={"root": UserEntry("root", 0, 0, "/root", "/bin/bash")},
        groups={"root": 0},
        network=NetworkState({"eth0": eth0, "lo": lo}),
        os_type="linux",
        python_version="3.11",
        slapos_version="1",
    )


def simulate(host: HostState, actions: tuple[act.Action, ...]) -> HostState:
    """The host after the actions (what apply.py would make of it)."""
    users, groups = dict(host.users), dict(host.groups)
    paths, files = dict(host.paths), dict(host.files)
    links = dict(host.network.links)
    local6, routes = set(host.network.local_routes6), set(host.network.routes)
    nonlocal_bind = host.network.nonlocal_bind
    for a in actions:
        if isinstance(a, act.AddGroup):
            groups[a.name] = 1000 + len(groups)
        elif isinstance(a, (act.AddUser, act.ModifyUser)):
            users[a.name] = UserEntry(
                a.name, 2000 + len(users), groups[a.name], a.home, a.shell, frozenset(a.groups)
            )
        elif isinstance(a, act.MakeDir):
            paths[a.path] = PathEntry(0, 0, a.mode)
        elif isinstance(a, act.ChangeMode):
            paths[a.path] = replace(paths[a.path], mode=a.mode)
        elif isinstance(a, act.ChangeOwner):
            paths[a.path] = replace(paths[a.path], uid=users[a.user].uid, gid=groups[a.group])
        elif isinstance(a, act.WriteFile):
            files[a.path] = a.content
            if a.archive:
                paths[a.archive] = PathEntry(0, 0, 0o644)
        elif isinstance(a, act.AddTuntap):
            links[a.name] = Link(a.name, (), a.mode, a.owner)
        elif isinstance(a, act.AddAddress):
            addr, _, plen = a.address.partition("/")
            family = 6 if ":" in addr else 4
            link = links[a.dev]
            links[a.dev] = replace(
                link, addresses=(*link.addresses, IfAddress(family, addr, int(plen)))
            )
        elif isinstance(a, act.AddRoute):
            dst = str(ipaddress.ip_network(a.dst, strict=False))
            if a.local:
                local6.add(dst)
            else:
                routes.add(Route(dst, a.dev, a.via))
        elif isinstance(a, act.SetSysctl):
            nonlocal_bind = True
    network = NetworkState(links, frozenset(local6), frozenset(routes), nonlocal_bind)
    return replace(host, users=users, groups=groups, paths=paths, files=files, network=network)


def previous_of(plan_xml: bytes):
    return computer_from_dict(loads_xml(plan_xml, "x"), "x")


def run_twice(config: FormatConfig, host: HostState):
    first = plan_format(config, None, host, random.Random(1))
    after = simulate(host, first.actions)
    previous = previous_of(after.files[str(config.computer_xml)])
    second = plan_format(config, previous, after, random.Random(2))
    return first, after, second


def argvs(plan) -> list[str]:
    return [" ".join(a.argv()) for a in plan.actions]


def test_fresh_node_plan(tmp_path):
    config = make_config(tmp_path)
    plan = plan_format(config, None, fresh_host(), random.Random(1))
    lines = argvs(plan)
    srv = tmp_path / "srv"
    assert f"useradd -d {tmp_path}/opt -g slapsoft -s /bin/sh -r slapsoft" in lines
    assert f"useradd -d {srv}/slappart0 -g slapuser0 -s /bin/sh -r -G slapsoft slapuser0" in lines
    assert "passwd -l slapuser1" in lines
    assert "ip addr add 2001:db8:1:2::2/64 dev eth0" in lines
    assert "ip addr add 2001:db8:1:2::3/64 dev eth0" in lines
    assert "ip -6 route add local 2001:db8:1:2:4001::/80 dev lo" in lines
    assert "sysctl -q net.ipv6.ip_nonlocal_bind=1" in lines
    assert f"mkdir -m 0750 {srv}/slappart1" in lines
    assert f"chown slapuser1:slapuser1 {srv}/slappart1" in lines
    v4 = [line for line in lines if line.startswith("ip addr add 10.0.")]
    assert len(v4) == 2 and all(line.endswith("/32 dev eth0") for line in v4)
    p0 = plan.computer.partition_list[0]
    assert p0.ipv6 is not None and p0.ipv4 is not None and p0.ipv6_range is not None
    assert p0.ipv6.addr == "2001:db8:1:2::2" and p0.ipv6.netmask == "ffff:ffff:ffff:ffff::"
    assert p0.ipv4.netmask == "255.255.255.255"
    assert p0.ipv6_range.network == "2001:db8:1:2:4001::/80"
    assert plan.computer.address == "2001:db8:1:2::1"
    # user before directory ownership, directory before its resource file
    index = {line: i for i, line in enumerate(lines)}
    assert (
        index[f"useradd -d {srv}/slappart0 -g slapuser0 -s /bin/sh -r -G slapsoft slapuser0"]
        < index[f"chown slapuser0:slapuser0 {srv}/slappart0"]
    )
    assert index[f"mkdir -m 0750 {srv}/slappart0"] < index[f"write {srv}/slappart0/{RESOURCE_FILE}"]


def test_second_run_plans_nothing(tmp_path):
    config = make_config(tmp_path, create_tap=True, create_tun=True)
    first, _after, second = run_twice(config, fresh_host())
    assert len(first.actions) > 20
    assert second.actions == ()
    assert second.computer == first.computer


def test_partitions_can_grow_but_not_shrink(tmp_path):
    config = make_config(tmp_path)
    first, after, _ = run_twice(config, fresh_host())
    previous = previous_of(after.files[str(config.computer_xml)])
    grown = plan_format(replace(config, partition_amount=3), previous, after, random.Random(3))
    assert [p.reference for p in grown.computer.partition_list] == [
        "slappart0",
        "slappart1",
        "slappart2",
    ]
    assert grown.computer.partition_list[:2] == first.computer.partition_list
    lines = argvs(grown)
    assert not any("slapuser0" in line or "slapuser1" in line for line in lines)
    assert any("useradd" in line and "slapuser2" in line for line in lines)
    with pytest.raises(FormatInputError, match="partitions can only be added"):
        plan_format(replace(config, partition_amount=1), previous, after, random.Random(3))


def test_tap_plan(tmp_path):
    config = make_config(tmp_path, create_tap=True, partition_amount=1)
    lines = argvs(plan_format(config, None, fresh_host(), random.Random(1)))
    assert "ip tuntap add dev slaptap0 mode tap user slapuser0" in lines
    assert "ip link set slaptap0 up" in lines
    assert "ip addr add 2001:db8:1:2:8001:ffff:ffff:ffff/80 dev slaptap0 noprefixroute" in lines
    assert "ip -6 route add 2001:db8:1:2:8001::1 dev slaptap0" in lines
    assert "ip -6 route add 2001:db8:1:2:8001::1/80 dev slaptap0 via 2001:db8:1:2:8001::1" in lines


def test_tap_gateway_gives_taps_ipv4(tmp_path):
    host = fresh_host()
    br = Link("br0", (IfAddress(4, "192.168.5.1", 24),))
    host = replace(host, network=replace(host.network, links={**host.network.links, "br0": br}))
    config = make_config(tmp_path, create_tap=True, tap_gateway_interface="br0", tap_ipv6=False)
    plan = plan_format(config, None, host, random.Random(1))
    taps = [p.tap for p in plan.computer.partition_list]
    assert [t.ipv4_addr for t in taps] == ["192.168.5.2", "192.168.5.3"]
    assert taps[0].ipv4_gateway == "192.168.5.1" and taps[0].ipv4_netmask == "255.255.255.0"
    assert "ip route add 192.168.5.2 dev slaptap0" in argvs(plan)


def test_without_root_no_command_is_planned_and_partitions_get_no_address(tmp_path):
    """alter_network false: nothing configured, so no address given (upstream's rule)."""
    config = make_config(
        tmp_path,
        alter_user=False,
        alter_network=False,
        interface_name="lo",
        ipv4_local_network=ipaddress.IPv4Network("127.10.0.0/16"),
    )
    plan = plan_format(config, None, fresh_host(), random.Random(1))
    assert plan.actions and all(not a.is_command for a in plan.actions)
    assert not any(isinstance(a, act.ChangeOwner) for a in plan.actions)
    assert [p.address_list for p in plan.computer.partition_list] == [(), ()]
    assert plan.warnings == (
        "alter_network is false: slappart0, slappart1 have no address (node format gives "
        "addresses only when it configures them; list them in input_definition_file)",
    )
    assert plan.computer.address is None  # lo has no global IPv6


def test_without_alter_network_known_addresses_stay(tmp_path):
    config = make_config(tmp_path)
    first, after, _ = run_twice(config, fresh_host())
    previous = previous_of(after.files[str(config.computer_xml)])
    quiet = replace(config, alter_network=False, partition_amount=3)
    plan = plan_format(quiet, previous, after, random.Random(3))
    partitions = plan.computer.partition_list
    assert partitions[:2] == first.computer.partition_list
    assert partitions[2].address_list == ()
    assert plan.computer.address == "2001:db8:1:2::1"  # still the interface's


def test_definition_file_without_network_changes_gives_the_computer_address(tmp_path):
    from slapos.format.model import Address, Computer, Partition, User, VirtualInterface

    config = make_config(tmp_path, alter_network=False, alter_user=False)
    given = [
        Partition(
            reference=f"part{i}",
            path=str(tmp_path / "srv" / f"part{i}"),
            user=User("nobody"),
            tap=VirtualInterface(""),
            address_list=(Address("127.0.0.1", "255.255.255.255"),),
        )
        for i in range(2)
    ]
    described = Computer("COMP-1", "", "", address="127.0.0.1", netmask="255.255.255.255")
    plan = plan_format(config, described, fresh_host(), random.Random(1), partitions=given)
    assert (plan.computer.address, plan.computer.netmask) == ("127.0.0.1", "255.255.255.255")
    assert plan.computer.interface is None  # as upstream: no interface without alter_network
    assert [p.address_list for p in plan.computer.partition_list] == [
        (Address("127.0.0.1", "255.255.255.255"),)
    ] * 2
    # with network changes, the interface decides, as for a node without definition file
    bare = [replace(p, address_list=()) for p in given]
    plan = plan_format(replace(config, alter_network=True), described, fresh_host(),
                       random.Random(1), partitions=bare)  # fmt: skip
    assert plan.computer.address == "2001:db8:1:2::1" and plan.computer.interface is not None


def test_computer_xml_history_starts_with_the_first_version(tmp_path):
    config = make_config(tmp_path)
    first, after, second = run_twice(config, fresh_host())
    xml, archive = str(config.computer_xml), f"{config.computer_xml}.zip"
    writes = [a for a in first.actions if isinstance(a, act.WriteFile) and a.path == xml]
    assert [w.archive for w in writes] == [archive]
    assert second.actions == ()
    # an XML without its archive (written by upstream's first run) is archived once
    lost = replace(after, paths={k: v for k, v in after.paths.items() if k != archive})
    again = plan_format(config, previous_of(after.files[xml]), lost, random.Random(2))
    assert [(a.path, a.archive) for a in again.actions if isinstance(a, act.WriteFile)] == [
        (xml, archive)
    ]
    assert len(again.actions) == 1


def test_resource_file_holds_upstream_keys(tmp_path):
    config = make_config(tmp_path, create_tap=True)
    plan = plan_format(config, None, fresh_host(), random.Random(1))
    write = next(
        a for a in plan.actions if isinstance(a, act.WriteFile) and a.path.endswith(RESOURCE_FILE)
    )
    data = json.loads(write.content)
    assert set(data) == {
        "reference",
        "path",
        "user",
        "address_list",
        "ipv6_range",
        "tap",
        "tun",
        "external_storage_list",
    }
    assert set(data["user"]) == {"name", "path", "shell", "additional_group_list"}
    assert set(data["ipv6_range"]) == {"addr", "netmask", "network", "prefixlen"}
    assert set(data["tap"]) == {
        "name",
        "ipv4_addr",
        "ipv4_netmask",
        "ipv4_gateway",
        "ipv4_network",
        "ipv6_addr",
        "ipv6_netmask",
        "ipv6_gateway",
        "ipv6_network",
    }
    assert write.mode == 0o644


def test_bad_input_is_refused_before_any_action(tmp_path):
    host = fresh_host()
    with pytest.raises(FormatInputError, match="no network interface 'eth9'"):
        plan_format(make_config(tmp_path, interface_name="eth9"), None, host, random.Random(1))
    clash = replace(
        host, users={**host.users, "slapuser0": UserEntry("slapuser0", 5, 5, "/home/x", "/bin/sh")}
    )
    with pytest.raises(FormatInputError, match="user 'slapuser0' already exists"):
        plan_format(make_config(tmp_path), None, clash, random.Random(1))
    no_v6 = replace(host, network=NetworkState({"eth0": Link("eth0")}))
    with pytest.raises(FormatError, match="at least one global IPv6"):
        plan_format(make_config(tmp_path), None, no_v6, random.Random(1))


def test_taken_address_falls_back_to_random(tmp_path):
    host = fresh_host()
    other = Link("eth1", (IfAddress(6, "2001:db8:1:2::2", 64),))
    host = replace(host, network=replace(host.network, links={**host.network.links, "eth1": other}))
    plan = plan_format(make_config(tmp_path, partition_amount=1), None, host, random.Random(1))
    ipv6 = plan.computer.partition_list[0].ipv6
    assert ipv6 is not None and ipv6.addr != "2001:db8:1:2::2"
    assert any("already taken" in w for w in plan.warnings)
