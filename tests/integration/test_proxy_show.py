"""`slapos proxy show`: ours renders an upstream database exactly as 1.26.1 does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.common import REPO
from tests.fixtures.proxy import start_proxy
from tests.fixtures.upstream import (
    RunningProxy,
    Upstream,
    formatted_computer_code,
    start_upstream_proxy,
)

SR = "http://sr.example.invalid/software.cfg"


def _populate(upstream: Upstream, proxy: RunningProxy) -> None:
    result = upstream.python_code(
        formatted_computer_code(proxy, partitions=3, ipv6=True)
        + textwrap.dedent(
            f"""
        import json
        slap.registerSupply().supply({SR!r}, {proxy.computer_id!r})
        order = slap.registerOpenOrder()
        root = order.request({SR!r}, "myinst", partition_parameter_kw={{"a": "1"}})
        part = slap.registerComputerPartition({proxy.computer_id!r}, root.getId())
        part.setConnectionDict({{"url": "http://x/", "ssh-public-key": "ssh-rsa " + "A" * 60,
                                "_": json.dumps({{"b": [1, 2], "a": "x"}})}})
        part.request({SR!r}, "default", "sh", shared=True, partition_parameter_kw={{"p": "q"}})
        """
        )
    )
    assert result.returncode == 0, result.stderr


def _ours(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slapos", "proxy", "show", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [[], ["--computers"], ["--partitions", "--params"], ["--slaves", "--network"], ["--software"]],
)
def test_show_matches_upstream(upstream: Upstream, tmp_path: Path, flags: list[str]) -> None:
    gen = start_upstream_proxy(upstream, tmp_path / "up")
    proxy = next(gen)
    try:
        _populate(upstream, proxy)
    finally:
        next(gen, None)
    theirs = upstream.run("proxy", "show", "--cfg", str(proxy.config), *flags)
    assert theirs.returncode == 0, theirs.stderr
    ours = _ours("--cfg", str(proxy.config), *flags)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout


def test_show_our_database_and_json(upstream: Upstream, tmp_path: Path) -> None:
    gen = start_proxy(tmp_path / "ours")
    proxy = next(gen)
    try:
        _populate(upstream, proxy)
    finally:
        next(gen, None)
    text = _ours("-u", str(proxy.database))
    assert text.returncode == 0, text.stderr
    assert "table partition18: skipping xml, connection_xml, slave_instance_list" in text.stdout
    assert "slappart0: myinst (type default)" in text.stdout
    document = json.loads(_ours("-u", str(proxy.database), "--format", "json").stdout)
    assert document["params"]["slappart0"]["parameters"]["url"] == "http://x/"
    assert document["network"]["slappart0"] == ["10.0.0.0", "fd00::0"]
    assert [row["partition_reference"] for row in document["partitions"]] == ["myinst"]


def test_show_errors(tmp_path: Path) -> None:
    missing = _ours("-u", str(tmp_path / "nope.db"))
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "nope.db").exists()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    result = _ours("-u", str(empty))
    assert result.returncode == 1 and "no proxy tables" in result.stderr
    config = tmp_path / "p.cfg"
    config.write_text("[slapproxy]\nport = 1\n")
    result = _ours("--cfg", str(config))
    assert result.returncode == 1 and "database_uri is required" in result.stderr


def test_show_finds_the_proxy_configuration_of_a_local_node(tmp_path: Path) -> None:
    """Without --cfg, one line says what to pass; given the node's or the client's
    configuration of `configure local`, the proxy's one beside it is read (and said)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    bare = subprocess.run(
        [sys.executable, "-m", "slapos", "proxy", "show"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False, env=env,
    )  # fmt: skip
    assert bare.returncode == 1
    [line] = bare.stderr.strip().splitlines()
    assert "no proxy configuration: /etc/opt/slapos/slapos.cfg does not exist" in line
    assert "slapos-proxy.cfg" in line
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "slapos.cfg").write_text("[slapos]\ncomputer_id = local_computer\n")
    (etc / "slapos-client.cfg").write_text("[slapos]\nmaster_url = http://127.0.0.1:9\n")
    (etc / "slapos-proxy.cfg").write_text(f"[slapproxy]\ndatabase_uri = {tmp_path}/none.db\n")
    for name in ("slapos.cfg", "slapos-client.cfg"):
        result = _ours("--cfg", str(etc / name))
        assert result.returncode == 1  # the database named there does not exist
        assert f"reading the proxy's configuration, {etc / 'slapos-proxy.cfg'}" in result.stderr
        assert f"{tmp_path}/none.db" in result.stderr


def test_a_sqlite_uri_a_slash_short_is_no_in_memory_database(tmp_path: Path) -> None:
    """`sqlite://tmp/p.db` (absolute paths take four slashes): an error naming it, never an
    in-memory master that `proxy start` would serve and forget on stop."""
    uri = f"sqlite:/{tmp_path}/p.db"
    result = _ours("-u", uri)
    assert result.returncode == 1
    assert ":memory:" not in result.stderr and uri in result.stderr, result.stderr
