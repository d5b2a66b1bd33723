"""slapos configure local: files, the proxy under the node's supervisord, a formatted node."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.config import IniFile
from slapos.errors import SlapOSError
from slapos.system import SubprocessRunner
from tests.fixtures.common import REPO, free_port
from tests.fixtures.netns import veth_namespace


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """supervisord's socket lives under the instance root: keep the path short."""
    path = Path("/tmp") / f"scl{secrets.token_hex(3)}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def options(base: Path, port: int, *extra: str) -> list[str]:
    return [
        "configure", "local",
        "--slapos-configuration-directory", str(base / "etc"),
        "--slapos-instance-root", str(base / "srv"),
        "--slapos-software-root", str(base / "soft"),
        "--slapos-buildout-directory", str(base),
        "--daemon-listen-port", str(port),
        "--partition-number", "3",
        *extra,
    ]  # fmt: skip


def shutdown(base: Path, prefix: tuple[str, ...] = ()) -> None:
    cfg = base / "etc" / "slapos.cfg"
    if cfg.exists():
        subprocess.run(
            [*prefix, sys.executable, "-m", "slapos", "node", "supervisorctl", "--cfg", str(cfg),
             "shutdown"],
            capture_output=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip


def test_configure_local_without_root(short_dir, upstream):
    port = free_port()
    ctx = Context.for_test(short_dir, euid=1000, runner=SubprocessRunner())
    try:
        rc = main(options(short_dir, port), ctx)
        assert rc == 0, ctx.stderr.getvalue()
        assert f"proxy at http://127.0.0.1:{port}" in ctx.stdout.getvalue()
        node = IniFile.read(short_dir / "etc" / "slapos.cfg")
        assert node.get("slapos", "master_url") == f"http://127.0.0.1:{port}"
        assert node.get("slapos", "root_check") == "false"
        assert node.get("slapformat", "alter_user") == "false"
        assert node.get("slapformat", "alter_network") == "false"
        assert node.get("slapformat", "ipv4_local_network") == "127.10.0.0/16"
        assert node.get("slapos", "key_file") is None
        client = IniFile.read(short_dir / "etc" / "slapos-client.cfg")
        assert client.get("slapos", "master_url") == f"http://127.0.0.1:{port}"
        proxy = IniFile.read(short_dir / "etc" / "slapos-proxy.cfg")
        assert proxy.get("slapproxy", "database_uri") == str(short_dir / "slapproxy.db")
        program = (short_dir / "srv" / "etc" / "supervisord.conf.d" / "slapproxy.conf").read_text()
        assert "[program:slapproxy]" in program and "proxy start --cfg" in program
        # the proxy runs and knows the formatted partitions
        from slapos import slap

        connection = slap.slap()
        connection.initializeConnection(f"http://127.0.0.1:{port}")
        partitions = connection.registerComputer("local_computer").getComputerPartitionList()
        assert sorted(p.getId() for p in partitions) == ["slappart0", "slappart1", "slappart2"]
        # format configures no address here: the definition file written beside gives them
        node_format = IniFile.read(short_dir / "etc" / "slapos.cfg")
        definition = short_dir / "slapformat-definition.cfg"
        assert node_format.get("slapformat", "input_definition_file") == str(definition)
        resource = json.loads((short_dir / "srv" / "slappart1" / ".slapos-resource").read_text())
        assert [a["addr"] for a in resource["address_list"]] == ["127.10.0.2", "::1"]
        shown = Context.for_test(short_dir, runner=SubprocessRunner())
        proxy_cfg = str(short_dir / "etc" / "slapos-proxy.cfg")
        assert main(["proxy", "show", "--cfg", proxy_cfg, "--computers"], shown) == 0
        assert "local_computer 127.0.0.1" in " ".join(shown.stdout.getvalue().split())
        # upstream's node format takes the same files and finds the same partitions
        resources = {p: p.read_bytes() for p in (short_dir / "srv").glob("*/.slapos-resource")}
        done = upstream.run("node", "format", "--cfg", str(short_dir / "etc" / "slapos.cfg"),
                            "--now")  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert {p: p.read_bytes() for p in resources} == resources
        # the client configuration works as it is
        listed = Context.for_test(short_dir, runner=SubprocessRunner())
        assert (
            main(
                ["computer", "list", "--cfg", str(short_dir / "etc" / "slapos-client.cfg")], listed
            )
            == 0
        )
        assert "local_computer" in listed.stdout.getvalue() + listed.stderr.getvalue()
        # a second configure local refuses to overwrite
        again = Context.for_test(short_dir, euid=1000, runner=SubprocessRunner())
        assert main(options(short_dir, port), again) == 1
        assert "already exists" in again.stderr.getvalue()
    finally:
        shutdown(short_dir)


def test_configure_local_in_an_unwritable_place_is_one_line(tmp_path):
    # beneath a regular file: no one, root included, can create a directory there
    target = tmp_path / "a-file"
    target.write_text("")
    ctx = Context.for_test(tmp_path, euid=1000, runner=SubprocessRunner())
    rc = main(options(target / "x", free_port()), ctx)
    assert rc == 1
    err = ctx.stderr.getvalue().strip()
    assert len(err.splitlines()) == 1
    assert "a-file" in err


def test_configure_local_on_a_port_another_program_holds_is_one_line(short_dir):
    # another demo's or node's master there: this node must not adopt it as its master
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        ctx = Context.for_test(short_dir, euid=1000, runner=SubprocessRunner())
        try:
            rc = main(options(short_dir, port), ctx)
        finally:
            shutdown(short_dir)
    assert rc == 1
    err = ctx.stderr.getvalue().strip()
    assert len(err.splitlines()) == 1
    assert f"127.0.0.1:{port} is already used by another program" in err
    assert not (short_dir / "etc" / "slapos.cfg").exists()  # a rerun on a free port works


def test_configure_local_on_an_address_not_of_this_machine_is_one_line(short_dir):
    # 192.0.2.1 (TEST-NET-1) is on no interface here: say so at once, not after 60 s
    ctx = Context.for_test(short_dir, euid=1000, runner=SubprocessRunner())
    argv = options(short_dir, free_port(), "--daemon-listen-ip", "192.0.2.1")
    assert main(argv, ctx) == 1
    [line] = ctx.stderr.getvalue().strip().splitlines()
    assert "the proxy cannot listen on 192.0.2.1:" in line
    assert not (short_dir / "etc" / "slapos.cfg").exists()


def test_configure_local_whose_proxy_cannot_start_stops_its_supervisord(short_dir):
    """A failure after supervisord started leaves nothing running (a rerun then starts
    clean), and says so in its one line; at once, not after a minute of waiting."""
    from slapos.grid import supervisor

    (short_dir / "slapproxy.db").mkdir()  # the proxy cannot open its database: it exits
    ctx = Context.for_test(short_dir, euid=1000, runner=SubprocessRunner())
    try:
        rc = main(options(short_dir, free_port()), ctx)
        state = supervisor.running_state(short_dir / "srv")
    finally:
        shutdown(short_dir)
    assert rc == 1, ctx.stderr.getvalue()
    err = ctx.stderr.getvalue()
    [line] = [line for line in err.splitlines() if " ERROR " in line]
    assert "Traceback" not in err
    assert "exited at each of its starts (see " in line, line
    assert line.endswith(
        "; stopped the supervisord (and proxy) this run had started"
        "; removed the configuration files it had written"
    ), line
    assert state is None
    assert not (short_dir / "etc" / "slapos.cfg").exists()
    # the files are gone, so a rerun tries again instead of "a configuration already exists"
    again = Context.for_test(short_dir, euid=1000, runner=SubprocessRunner())
    try:
        assert main(options(short_dir, free_port()), again) == 1
    finally:
        shutdown(short_dir)
    assert "already exists" not in again.stderr.getvalue()
    assert "exited at each of its starts" in again.stderr.getvalue()


def test_configure_local_failing_leaves_a_supervisord_that_ran_before(short_dir):
    from slapos.cli.configure.local_setup import LocalSettings, configure_local
    from slapos.grid import supervisor

    settings = LocalSettings(
        config_dir=short_dir / "etc",
        instance_root=short_dir / "srv",
        software_root=short_dir / "soft",
        home=short_dir,
        listen_port=free_port(),
        partition_amount=1,
    )
    (short_dir / "slapproxy.db").mkdir()
    runner = SubprocessRunner()
    try:
        with pytest.raises(SlapOSError) as first:
            configure_local(settings, runner, lambda: 0)
        assert "stopped the supervisord" in str(first.value)
        supervisor.ensure_supervisord(settings.instance_root, runner)  # as a user may have
        with pytest.raises(SlapOSError) as again:
            configure_local(settings, runner, lambda: 0, reuse=True)
        assert "stopped" not in str(again.value)
        assert supervisor.running_state(settings.instance_root) == "RUNNING"
    finally:
        supervisor.shutdown(settings.instance_root)


# ---- as root, in a network namespace: users, addresses --------------------------------


@pytest.mark.root
def test_configure_local_as_root_on_an_interface(short_dir):
    # users of its own: a demo or a real node on this host may own slapsoft/slapuserN
    base = f"tcl{secrets.token_hex(3)}"
    users = (f"{base}s", *(f"{base}u{i}" for i in range(3)))
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, check=False, timeout=120)  # noqa: E731
    try:
        with veth_namespace("tstcl", "2001:db8:7::1/64") as ns:
            inside = ("ip", "netns", "exec", ns)
            try:
                short_dir.chmod(0o755)
                done = subprocess.run(
                    [*inside, sys.executable, "-m", "slapos",
                     *options(short_dir, free_port(), "--interface-name", "v0",
                              "--user-base-name", f"{base}u", "--software-user", users[0])],
                    capture_output=True, text=True, timeout=300, check=False, cwd=short_dir,
                    env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(short_dir)},
                )  # fmt: skip
                assert done.returncode == 0, done.stdout + done.stderr
                node = IniFile.read(short_dir / "etc" / "slapos.cfg")
                assert node.get("slapformat", "alter_network") is None  # upstream's default: true
                assert node.get("slapformat", "ipv4_local_network") == "10.0.0.0/16"
                user = pwd.getpwnam(f"{base}u2")
                assert user.pw_dir == str(short_dir / "srv" / "slappart2")
                assert (short_dir / "srv" / "slappart2").stat().st_uid == user.pw_uid
                addresses = run(*inside, "ip", "-j", "addr", "show", "v0").stdout
                assert '"2001:db8:7::4"' in addresses  # slappart2's IPv6
            finally:
                shutdown(short_dir, inside)
    finally:
        for name in users:
            run("userdel", name)
            run("groupdel", name)
            run("groupdel", name)
