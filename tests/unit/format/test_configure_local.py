from __future__ import annotations

import stat
from pathlib import Path

from slapos.config import IniFile
from slapos.format.config import load_format_config
from slapos.format.configure_local import LocalSettings, write_files


def settings(tmp_path: Path, **kw) -> LocalSettings:
    values = {
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
    assert node.get("slapos", "pidfile_instance", "").startswith(str(tmp_path))
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
    key = Path(proxy.get("slapproxy", "shacache-signing-key-path"))
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    on_lo = settings(tmp_path / "lo", privileged=True)
    write_files(on_lo)
    config = load_format_config(IniFile.read(on_lo.node_config))
    assert (config.alter_user, config.alter_network) == (True, False)
