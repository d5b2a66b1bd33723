"""slapos node format for real: unprivileged layouts, masters, and (as root) a network
namespace with real users, taps and tuns."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import secrets
import stat
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slapos.cli.context import CapturedContext, Context
from slapos.cli.main import main
from slapos.system import SubprocessRunner
from tests.fakes import FakeClock
from tests.fixtures.common import REPO, as_user
from tests.fixtures.netns import veth_namespace


def node_cfg(tmp_path: Path, master_url: str = "http://127.0.0.1:9", **slapformat: str) -> Path:
    values = {
        "interface_name": "lo",
        "ipv4_local_network": "127.10.0.0/16",
        "partition_amount": "3",
        "computer_xml": f"{tmp_path}/slapos.xml",
        "computer_json": f"{tmp_path}/slapos.json",
        "alter_user": "false",
        "alter_network": "false",
        "create_tap": "false",
        "partition_has_ipv6_range": "false",
    }
    values.update(slapformat)
    body = "\n".join(f"{k} = {v}" for k, v in values.items())
    cfg = tmp_path / "slapos.cfg"
    cfg.write_text(
        textwrap.dedent(f"""\
        [slapos]
        computer_id = local_computer
        master_url = {master_url}
        instance_root = {tmp_path}/srv
        software_root = {tmp_path}/opt
        root_check = false
        [slapformat]
        """)
        + body
        + "\n"
    )
    return cfg


def fmt(cfg: Path, *extra: str, euid: int | None = None) -> tuple[int, CapturedContext]:
    ctx = Context.for_test(cfg.parent, euid=euid, runner=SubprocessRunner())
    return main(["node", "format", "--cfg", str(cfg), "--now", *extra], ctx), ctx


def test_dry_run_never_sleeps(tmp_path):
    clock = FakeClock()
    ctx = Context.for_test(tmp_path, euid=1000, clock=clock, runner=SubprocessRunner())
    cfg = node_cfg(tmp_path)
    assert main(["node", "format", "--cfg", str(cfg), "--dry-run"], ctx) == 0  # no --now
    assert "changes planned" in ctx.stdout.getvalue()
    assert "sleeping" not in ctx.stderr.getvalue() and clock.sleeps == []


def test_unprivileged_format_is_idempotent_and_offline_is_exit_2(tmp_path):
    cfg = node_cfg(tmp_path)
    rc, ctx = fmt(cfg, "--dry-run", euid=1000)
    assert rc == 0
    assert "changes planned" in ctx.stdout.getvalue()
    assert not (tmp_path / "srv").exists() and not (tmp_path / "slapos.xml").exists()
    rc, ctx = fmt(cfg, euid=1000)
    assert rc == 2  # formatted, the master (port 9) did not answer
    assert "the master was not told" in ctx.stderr.getvalue()
    for i in range(3):
        part = tmp_path / "srv" / f"slappart{i}"
        assert stat.S_IMODE(part.stat().st_mode) == 0o750
        resource = json.loads((part / ".slapos-resource").read_text())
        assert resource["reference"] == f"slappart{i}"
        assert resource["address_list"] == []  # alter_network false: none given (upstream)
    assert "slappart0, slappart1, slappart2 have no address" in ctx.stderr.getvalue()
    first = (tmp_path / "slapos.xml").read_bytes()
    assert history(tmp_path) == [first]  # the history starts with the first version
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    rc, ctx = fmt(cfg, "-n", euid=1000)
    assert ctx.stdout.getvalue() == "local_computer: nothing to change\n"
    fmt(cfg, euid=1000)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # partitions can be added; the XML history keeps the previous version
    cfg.write_text(cfg.read_text().replace("partition_amount = 3", "partition_amount = 4"))
    fmt(cfg, euid=1000)
    assert (tmp_path / "srv" / "slappart3" / ".slapos-resource").exists()
    assert history(tmp_path) == [first, first]
    assert b"slappart3" in (tmp_path / "slapos.xml").read_bytes()


def history(directory: Path) -> list[bytes]:
    """The versions kept in slapos.xml.zip, oldest first (names checked: upstream's)."""
    with zipfile.ZipFile(directory / "slapos.xml.zip") as archive:
        names = archive.namelist()
        assert all(re.fullmatch(r"slapos\.xml\.\d{8}-\d\d:\d\d", n) for n in names), names
        return [archive.read(n) for n in names]


def test_root_check_and_bad_input(tmp_path):
    cfg = node_cfg(tmp_path)
    cfg.write_text(cfg.read_text().replace("root_check = false\n", ""))
    rc, ctx = fmt(cfg, euid=1000)
    assert rc == 5 and "must be run as root" in ctx.stderr.getvalue()
    for key, value, message in [
        ("partition_amount", "many", "partition_amount must be a whole number"),
        ("ipv4_local_network", "10.0.0.300/16", "ipv4_local_network is not an IPv4 network"),
    ]:
        cfg = node_cfg(tmp_path, **{key: value})
        rc, ctx = fmt(cfg, euid=1000)
        lines = ctx.stderr.getvalue().strip().splitlines()
        assert rc == 1 and len(lines) == 1 and message in lines[0], lines
        assert not (tmp_path / "srv").exists()
    cfg = node_cfg(tmp_path, interface_name="nosuch0", alter_network="true")
    rc, ctx = fmt(cfg, euid=0)
    assert rc == 1 and "no network interface 'nosuch0'" in ctx.stderr.getvalue()
    assert not (tmp_path / "srv").exists()


@pytest.mark.parametrize("master", ["proxy", "upstream_proxy"])
def test_format_posts_the_partitions_to_the_master(tmp_path, request, master):
    running = request.getfixturevalue(master)
    cfg = node_cfg(tmp_path, master_url=running.url)
    rc, ctx = fmt(cfg, euid=1000)
    assert rc == 0, ctx.stderr.getvalue()
    from slapos import slap

    connection = slap.slap()
    connection.initializeConnection(running.url)
    partitions = connection.registerComputer("local_computer").getComputerPartitionList()
    assert sorted(p.getId() for p in partitions) == ["slappart0", "slappart1", "slappart2"]


# ---- as root, in a network namespace --------------------------------------------------


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture
def netns() -> Iterator[str]:
    with veth_namespace("tstns", "2001:db8:1:2::1/64") as name:
        yield name


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    """Unique user base name and software user; every user and group made is removed."""
    base, soft = f"tstu{secrets.token_hex(2)}x", f"tsts{secrets.token_hex(2)}"
    try:
        yield base, soft
    finally:
        for entry in pwd.getpwall():
            if entry.pw_name.startswith(base) or entry.pw_name == soft:
                sh("userdel", entry.pw_name, check=False)
        for group in grp.getgrall():
            if group.gr_name.startswith(base) or group.gr_name == soft:
                sh("groupdel", group.gr_name, check=False)


def format_in(ns: str, cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "slapos",
            "node",
            "format",
            "--cfg",
            str(cfg),
            "--now",
            *extra,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


def ns_links(ns: str) -> dict[str, dict[str, Any]]:
    out = sh("ip", "netns", "exec", ns, "ip", "-j", "-d", "addr", "show").stdout
    return {link["ifname"]: link for link in json.loads(out)}


def ns_routes(ns: str, *args: str) -> list[dict[str, Any]]:
    out = sh("ip", "netns", "exec", ns, "ip", "-j", *args).stdout
    routes: list[dict[str, Any]] = json.loads(out or "[]")
    return routes


def addresses(link: dict[str, Any]) -> set[str]:
    return {a["local"] for a in link.get("addr_info", [])}


def namespace_node_cfg(tmp_path: Path, names: tuple[str, str], **slapformat: str) -> Path:
    """A root node of two partitions on interface v0 of the test's network namespace:
    users, network and taps altered, the root check on."""
    base, soft = names
    cfg = node_cfg(
        tmp_path,
        interface_name="v0",
        ipv4_local_network="10.44.0.0/16",
        partition_amount="2",
        alter_user="true",
        alter_network="true",
        create_tap="true",
        partition_has_ipv6_range="true",
        user_base_name=base,
        software_user=soft,
        tap_base_name=f"{base}t",
        **slapformat,
    )
    cfg.write_text(cfg.read_text().replace("root_check = false\n", ""))
    return cfg


@pytest.mark.root
def test_format_as_root_in_a_network_namespace(tmp_path, netns, names):
    base, soft = names
    cfg = namespace_node_cfg(tmp_path, names, create_tun="true")
    done = format_in(netns, cfg)
    assert done.returncode == 2, done.stderr  # no master reachable from the namespace
    computer = json.loads((tmp_path / "slapos.json").read_text())
    links = ns_links(netns)
    assert computer["address"] == "2001:db8:1:2::1"
    soft_entry = pwd.getpwnam(soft)
    assert soft_entry.pw_dir == str(tmp_path / "opt")
    assert (tmp_path / "opt").stat().st_uid == soft_entry.pw_uid
    for i, partition in enumerate(computer["partition_list"]):
        user = pwd.getpwnam(f"{base}{i}")
        path = tmp_path / "srv" / f"slappart{i}"
        assert partition["path"] == str(path) and user.pw_dir == str(path)
        assert user.pw_shell == "/bin/sh" and grp.getgrgid(user.pw_gid).gr_name == f"{base}{i}"
        assert f"{base}{i}" in grp.getgrnam(soft).gr_mem
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, user.pw_gid, 0o750)
        resource = json.loads((path / ".slapos-resource").read_text())
        assert resource == partition
        assert stat.S_IMODE((path / ".slapos-resource").stat().st_mode) == 0o644
        v4, v6 = (a["addr"] for a in partition["address_list"])
        assert v6 == f"2001:db8:1:2::{i + 2}"
        assert {v4, v6} <= addresses(links["v0"])
        tap = links[f"{base}t{i}"]
        assert tap["linkinfo"]["info_data"]["type"] == "tap"
        assert tap["linkinfo"]["info_data"]["user"] == f"{base}{i}"
        assert partition["tap"]["ipv6_addr"] == f"2001:db8:1:2:800{i + 1}:ffff:ffff:ffff"
        assert partition["tap"]["ipv6_addr"] in addresses(tap)
        tun = links[f"slaptun{i}"]
        assert tun["linkinfo"]["info_data"]["type"] == "tun"
        assert {partition["tun"]["ipv4_addr"], partition["tun"]["ipv6_addr"]} <= addresses(tun)
        assert partition["ipv6_range"]["network"] == f"2001:db8:1:2:400{i + 1}::/80"
    local = {
        r["dst"]
        for r in ns_routes(netns, "-6", "route", "show", "table", "local")
        if r.get("dev") == "lo"
    }
    assert {"2001:db8:1:2:4001::/80", "2001:db8:1:2:4002::/80"} <= local
    via = {(r["dst"], r.get("gateway")) for r in ns_routes(netns, "-6", "route", "show")}
    assert ("2001:db8:1:2:8001::/80", "2001:db8:1:2:8001::1") in via
    # a second run changes nothing
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again = format_in(netns, cfg, "--dry-run")
    assert again.stdout == "local_computer: nothing to change\n", again.stdout + again.stderr
    assert format_in(netns, cfg).returncode == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert ns_links(netns).keys() == links.keys()


@pytest.mark.root
def test_user_base_name_clash_is_refused_before_any_change(tmp_path, netns, names):
    base, soft = names
    sh("useradd", "-r", "-d", "/nonexistent", "-s", "/bin/false", f"{base}0")
    cfg = node_cfg(
        tmp_path,
        interface_name="v0",
        ipv4_local_network="10.44.0.0/16",
        alter_user="true",
        alter_network="true",
        user_base_name=base,
        software_user=soft,
    )
    done = format_in(netns, cfg)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"user '{base}0' already exists" in errors[0]
    assert not (tmp_path / "srv").exists()
    with contextlib.suppress(KeyError):
        pwd.getpwnam(soft)
        pytest.fail("the software user was created although format was refused")


def definition(path: Path, partitions: int = 3, user: str = "slapuser") -> Path:
    """A definition file as upstream's standalone node writes one (addresses on lo)."""
    text = "[computer]\naddress = 127.0.0.1/255.255.255.255\n"
    for i in range(partitions):
        text += textwrap.dedent(f"""
            [partition_{i}]
            address = 127.10.0.{i + 1}/255.255.255.255 ::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
            pathname = slappart{i}
            user = {user}{i if user == "slapuser" else ""}
            network_interface =
            """)  # fmt: skip
    path.write_text(text)
    return path


def test_definition_files_round_trip(tmp_path):
    cfg = node_cfg(tmp_path)
    given = definition(tmp_path / "given.cfg")
    rc, _ = fmt(cfg, "-i", str(given), euid=1000)
    assert rc == 2
    before = json.loads((tmp_path / "slapos.json").read_text())
    assert (before["address"], before["netmask"]) == ("127.0.0.1", "255.255.255.255")
    assert before["interface"] is None  # as upstream: no interface without alter_network
    assert [a["addr"] for a in before["partition_list"][2]["address_list"]] == [
        "127.10.0.3",
        "::1",
    ]
    written = tmp_path / "definition.cfg"
    rc, _ = fmt(cfg, "-i", str(given), "-o", str(written), euid=1000)
    text = written.read_text()
    assert "[partition_2]" in text and "pathname = slappart2" in text
    (tmp_path / "slapos.xml").unlink()
    rc, _ = fmt(cfg, "-i", str(written), euid=1000)
    after = json.loads((tmp_path / "slapos.json").read_text())
    assert after == before


def format_both(base: Path, upstream, **slapformat: str) -> dict[str, dict[str, Any]]:
    """Upstream, then ours, format the same configuration in base/upstream and base/ours;
    each one's JSON (paths made alike, versions dropped), resources and XML history."""
    results = {}
    for who in ("upstream", "ours"):
        where = base / who
        where.mkdir()
        cfg = node_cfg(where, **slapformat)
        if who == "upstream":
            done = upstream.run("node", "format", "--cfg", str(cfg), "--now", timeout=300)
            rc, err = done.returncode, done.stderr
        else:
            rc, ctx = fmt(cfg, euid=0)
            err = ctx.stderr.getvalue()
        assert rc in (0, 2), err[-2000:]
        xml = (where / "slapos.xml").read_bytes()
        assert not (where / "slapos.xml.zip").exists() or who == "ours"
        if who == "upstream":  # upstream starts its history on the second run
            assert upstream.run("node", "format", "--cfg", str(cfg), "--now").returncode in (0, 2)
        computer = json.loads((where / "slapos.json").read_text().replace(str(where), "X"))
        for key in ("python_version", "slapos_version"):
            computer.pop(key)
        results[who] = {
            "computer": computer,
            "resources": {
                p.parent.name: p.read_text().replace(str(where), "X")
                for p in (where / "srv").glob("*/.slapos-resource")
            },
            "history_is_the_first_version": history(where) == [xml],
        }
    return results


def test_a_definition_file_node_is_formatted_as_upstream_does(tmp_path, upstream, upstream_proxy):
    """Upstream's standalone layout: addresses from a definition file, no network change;
    the node's own address is the file's, and the master shows it."""
    me = pwd.getpwuid(os.getuid()).pw_name
    shown = {}
    for who in ("upstream", "ours"):
        (tmp_path / who).mkdir()
        given = definition(tmp_path / who / "given.cfg", partitions=2, user=me)
        got = format_both(
            tmp_path / who, upstream, master_url=upstream_proxy.url, partition_amount="2",
            partition_base_name="slappart", input_definition_file=str(given),
        )  # fmt: skip
        assert got["upstream"] == got["ours"]
        computer = got["ours"]["computer"]
        assert (computer["address"], computer["interface"]) == ("127.0.0.1", None)
        part = computer["partition_list"][1]
        assert [a["addr"] for a in part["address_list"]] == ["127.10.0.2", "::1"]
        # the master: upstream's proxy shows the node's address, whoever formatted
        show = upstream.run("proxy", "show", "--cfg", str(upstream_proxy.config), "--computers")
        shown[who] = show.stdout.split()
    assert shown["upstream"] == shown["ours"]
    assert "127.0.0.1" in shown["ours"] and "255.255.255.255" in shown["ours"]


@pytest.mark.root
def test_without_alter_network_partitions_get_no_address_as_upstream(tmp_path, netns, names,
                                                                      upstream):  # fmt: skip
    """alter_network false on an interface with a global IPv6: the node's address is the
    interface's and partitions get none, in the computer description and .slapos-resource,
    as upstream."""
    base, soft = names
    results = {}
    for who in ("upstream", "ours"):
        where = tmp_path / who
        where.mkdir()
        cfg = node_cfg(
            where, interface_name="v0", partition_amount="2", partition_base_name="slappart",
            tap_base_name="slaptap",  # upstream has no default for these two ("None0")
            user_base_name=base, software_user=soft,
            # upstream needs the partition users; ours finds them made (homes elsewhere)
            alter_user="true" if who == "upstream" else "false",
        )  # fmt: skip
        if who == "upstream":
            argv = [str(upstream.slapos), "node", "format", "--cfg", str(cfg), "--now"]
            done = sh("ip", "netns", "exec", netns, *argv, check=False)
        else:
            done = format_in(netns, cfg)
        assert done.returncode == 2, done.stderr[-2000:]  # formatted, no master
        computer = json.loads((where / "slapos.json").read_text().replace(str(where), "X"))
        for key in ("python_version", "slapos_version"):
            computer.pop(key)
        resources = {
            p.parent.name: p.read_text().replace(str(where), "X")
            for p in (where / "srv").glob("*/.slapos-resource")
        }
        results[who] = (computer, resources)
    assert results["ours"] == results["upstream"]
    computer = results["ours"][0]
    assert computer["address"] == "2001:db8:1:2::1"
    assert [p["address_list"] for p in computer["partition_list"]] == [[], []]
    on_v0 = {a for a in addresses(ns_links(netns)["v0"]) if not a.startswith("fe80:")}
    assert on_v0 == {"2001:db8:1:2::1"}  # nothing added to the interface


def test_boot_formats_bangs_and_removes_timestamps(tmp_path, upstream_proxy):
    cfg = node_cfg(tmp_path, master_url=upstream_proxy.url)
    stamp = tmp_path / "srv" / "slappart1" / ".timestamp"
    stamp.parent.mkdir(parents=True)
    stamp.write_text("123")
    ctx = Context.for_test(tmp_path, euid=1000, runner=SubprocessRunner())
    rc = main(["node", "boot", "--cfg", str(cfg), "-m", "power is back"], ctx)
    assert rc == 0, ctx.stderr.getvalue()
    assert not stamp.exists()
    assert (tmp_path / "srv" / "slappart2" / ".slapos-resource").exists()


@pytest.mark.root
def test_upstream_and_we_read_each_others_formatted_node(tmp_path, netns, names, upstream):
    """Upstream formats; we find nothing to change but the XML/JSON facts (versions), and
    the files we write are upstream's, byte for byte (.slapos-resource) or key for key."""
    cfg = namespace_node_cfg(tmp_path, names)
    done = subprocess.run(
        ["ip", "netns", "exec", netns, str(upstream.slapos), "node", "format", "--cfg", str(cfg),
         "--now"], capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]  # formatted, master offline
    theirs = json.loads((tmp_path / "slapos.json").read_text())
    resources = {p: p.read_bytes() for p in (tmp_path / "srv").glob("*/.slapos-resource")}
    plan = format_in(netns, cfg, "--dry-run")
    planned = plan.stdout.splitlines()[1:]
    assert len(planned) == 2, plan.stdout
    assert planned[0].startswith(f"  write {tmp_path}/slapos.xml ("), plan.stdout
    assert planned[1].startswith(f"  write {tmp_path}/slapos.json ("), plan.stdout
    assert format_in(netns, cfg).returncode == 2
    ours = json.loads((tmp_path / "slapos.json").read_text())
    for key in ("python_version", "slapos_version"):
        theirs.pop(key), ours.pop(key)
    assert ours == theirs
    assert {p: p.read_bytes() for p in resources} == resources
    # and upstream, reading our XML, has nothing to change in the partitions either
    done = subprocess.run(
        ["ip", "netns", "exec", netns, str(upstream.slapos), "node", "format", "--cfg", str(cfg),
         "--now"], capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    again = json.loads((tmp_path / "slapos.json").read_text())
    assert again["partition_list"] == theirs["partition_list"]


def test_dry_run_as_an_unprivileged_process_changes_nothing(open_dir, node_python):
    """A real non-root process plans users, addresses and taps, and touches nothing."""
    tmp_path = open_dir
    (tmp_path / "home").mkdir()
    base = f"tstu{secrets.token_hex(2)}x"  # nothing is created: no clean-up needed
    cfg = node_cfg(
        tmp_path,
        user_base_name=base,
        alter_user="true",
        alter_network="true",
        create_tap="true",
        partition_has_ipv6_range="true",
        interface_name="lo",
    )
    ids = as_user(pwd.getpwnam("nobody") if os.geteuid() == 0 else None)
    # lo has no global IPv6: with alter_network, format refuses in one line; with
    # --alter_network False, the plan (users included) is printed.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [str(node_python), "-m", "slapos", "node", "format", "--cfg", str(cfg), "--now", "-n"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False,
                          cwd=tmp_path, **ids)  # fmt: skip
    assert done.returncode == 1
    assert "lo must have at least one global IPv6 address" in done.stderr
    done = subprocess.run([*argv, "--alter_network", "False"], capture_output=True, text=True,
                          timeout=120, env=env, check=False, cwd=tmp_path, **ids)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "useradd -d" in done.stdout and f"passwd -l {base}2" in done.stdout
    assert "ip " not in done.stdout  # --alter_network False wins over the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "slapos.cfg"]
