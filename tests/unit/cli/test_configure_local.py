from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from slapos.cli.configure.local_setup import LocalSettings, write_files
from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.config import IniFile
from slapos.format.config import load_format_config
from tests.fixtures.common import free_port


def settings(tmp_path: Path, **kw) -> LocalSettings:
    values: dict[str, Any] = {
        "config_dir": tmp_path / "etc",
        "instance_root": tmp_path / "srv",
        "software_root": tmp_path / "soft",
        "home": tmp_path,
        "partition_amount": 4,
        "listen_port": 8123,
    }
    values.update(kw)
    return LocalSettings(**values)


def test_unprivileged_files(tmp_path):
    s = settings(tmp_path)
    write_files(s)
    node = IniFile.read(s.node_config)
    config = load_format_config(node)
    assert (config.alter_user, config.alter_network, config.root_check) == (False, False, False)
    assert config.partition_amount == 4 and config.computer_id == "local_computer"
    assert config.master_url == "http://127.0.0.1:8123"
    assert str(config.ipv4_local_network) == "127.10.0.0/16"
    assert str(node.get("slapos", "pidfile_instance", "")).startswith(str(tmp_path))
    assert not node.has_section("networkcache")  # nothing to download from
    proxy = IniFile.read(s.proxy_config)
    assert proxy.get("slapproxy", "port") == "8123"
    assert IniFile.read(s.client_config).get("slapos", "master_url") == s.master_url
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o700


def test_root_layouts_and_shacache(tmp_path):
    s = settings(
        tmp_path,
        privileged=True,
        alter_network=True,
        interface_name="eth0",
        ipv4_local_network="10.0.0.0/16",
        shacache=True,
    )
    write_files(s)
    config = load_format_config(IniFile.read(s.node_config))
    assert (config.alter_user, config.alter_network, config.root_check) == (True, True, True)
    node = IniFile.read(s.node_config)
    assert node.get("networkcache", "download-binary-cache-url") == (
        "http://127.0.0.1:8123/shacache/cache"
    )
    assert node.get("networkcache", "download-dir-url") == "http://127.0.0.1:8123/shacache/dir"
    proxy = IniFile.read(s.proxy_config)
    key = Path(str(proxy.get("slapproxy", "shacache-signing-key-path")))
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    on_lo = settings(tmp_path / "lo", privileged=True)
    write_files(on_lo)
    config = load_format_config(IniFile.read(on_lo.node_config))
    assert (config.alter_user, config.alter_network) == (True, False)


def test_layouts_without_network_changes_give_addresses_in_a_definition_file(tmp_path):
    import os
    import pwd

    import pytest

    from slapos.cli.configure.local_setup import ConfigureLocalError
    from slapos.format.model import read_definition

    for privileged in (False, True):
        s = settings(tmp_path / str(privileged), privileged=privileged, partition_amount=3)
        write_files(s)
        config = load_format_config(IniFile.read(s.node_config))
        assert (
            config.input_definition_file
            == s.definition_file
            == s.home / ("slapformat-definition.cfg")
        )
        computer, partitions = read_definition(s.definition_file.read_text(), "x", 3)
        assert computer == {"address": "127.0.0.1/255.255.255.255"}
        assert [p["address"].split()[0] for p in partitions] == [
            "127.10.0.1/255.255.255.255",
            "127.10.0.2/255.255.255.255",
            "127.10.0.3/255.255.255.255",
        ]
        assert all(p["address"].split()[1].startswith("::1/ffff:") for p in partitions)
        me = pwd.getpwuid(os.geteuid()).pw_name
        users = [p["user"] for p in partitions]
        assert users == (["slapuser0", "slapuser1", "slapuser2"] if privileged else [me] * 3)
        assert [p["pathname"] for p in partitions] == ["slappart0", "slappart1", "slappart2"]
    on_eth0 = settings(tmp_path / "eth0", privileged=True, alter_network=True)
    write_files(on_eth0)
    assert on_eth0.definition_file is None
    assert load_format_config(IniFile.read(on_eth0.node_config)).input_definition_file is None
    tiny = settings(tmp_path / "tiny", ipv4_local_network="127.10.0.0/31", partition_amount=3)
    with pytest.raises(ConfigureLocalError, match="fewer addresses than the 3 partitions"):
        write_files(tiny)
    assert not (tmp_path / "tiny").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--partition-number", "-2"], "--partition-number: expected a whole number, 0 or more"),
        (["--ipv4-local-network", "10.0.0.0/33"], "--ipv4-local-network: expected an IPv4 net"),
        (["--daemon-listen-port", "70000"], "--daemon-listen-port: expected a port from 1 to"),
    ],
)
def test_bad_options_are_usage_errors_before_anything_is_written(tmp_path, option, message):
    ctx = Context.for_test(tmp_path, euid=1000)
    argv = ["configure", "local", "--slapos-configuration-directory", str(tmp_path / "etc")]
    # everything under tmp_path, so that even a regression touches nothing of the machine's
    argv += ["--slapos-instance-root", str(tmp_path / "srv"), "--slapos-software-root"]
    argv += [str(tmp_path / "soft"), "--slapos-buildout-directory", str(tmp_path)]
    argv += ["--daemon-listen-port", str(free_port())]  # the option tried comes after: it wins
    assert main([*argv, *option], ctx) == 2
    assert message in ctx.stderr.getvalue()
    assert "Traceback" not in ctx.stderr.getvalue()
    assert not (tmp_path / "etc").exists()
    if option[0] != "--daemon-listen-port":  # node register shares these two
        ctx = Context.for_test(tmp_path, euid=0)
        register = ["node", "register", "n", "--dry-run", "--cfg", str(tmp_path / "r.cfg")]
        assert main([*register, *option], ctx) == 2
        assert message in ctx.stderr.getvalue()
