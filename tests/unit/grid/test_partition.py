"""The generated buildout.cfg tail, the skip rule, retention and emptying a partition."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slapos.grid.partition import (
    Partition,
    PartitionError,
    SlapConnection,
    buildout_tail,
    is_up_to_date,
    read_periodicity,
)
from tests.fixtures.upstream import Upstream


def test_tail_matches_upstream_template(upstream: Upstream) -> None:
    (template,) = upstream.venv.glob(
        "lib/python3*/site-packages/slapos/grid/templates/buildout-tail.cfg.in"
    )
    values = {
        "computer_id": "COMP-9",
        "partition_id": "slappart3",
        "server_url": "https://master/",
        "software_release_url": "https://sr/software.cfg",
        "key_file": "/repo/slappart3.key",
        "cert_file": "/repo/slappart3.crt",
        "shared_part_list": "\n  ".join(["/opt/shared", "/srv/shared"]),
        "build_time_part_list": "",
        "requested_state": "started",
        "storage_home": "/data",
        "global_ipv4_network_prefix": "",
    }
    expected = template.read_text() % values
    ours = buildout_tail(
        SlapConnection(
            "COMP-9",
            "slappart3",
            "https://master/",
            "https://sr/software.cfg",
            "/repo/slappart3.key",
            "/repo/slappart3.crt",
            ("/opt/shared", "/srv/shared"),
            (),
            "started",
            "/data",
            "",
        )
    )

    def content(text: str) -> list[str]:  # comments aside (upstream has a typo in one)
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert content(ours) == content(expected)


def make(tmp_path: Path) -> Partition:
    path = tmp_path / "slappart0"
    path.mkdir()
    path.chmod(0o750)
    return Partition("slappart0", path, "http://sr", tmp_path / "sr")


def test_skip_rule(tmp_path: Path) -> None:
    p = make(tmp_path)
    assert not is_up_to_date(p, "1", 100, 0)  # no .timestamp yet
    p.timestamp_file.write_text("1")
    mtime = p.timestamp_file.stat().st_mtime
    assert is_up_to_date(p, "1", 100, mtime + 50)
    assert not is_up_to_date(p, "1", 0, mtime)  # periodicity 0: always processed
    assert is_up_to_date(p, "1", -1, mtime + 10**9)  # negative: never again
    assert not is_up_to_date(p, None, 100, mtime)
    assert not is_up_to_date(p, "1", 100, mtime + 101)  # expired: .timestamp removed
    assert not p.timestamp_file.exists()
    p.timestamp_file.write_text("1")
    assert not is_up_to_date(p, "2", 100, mtime)


def test_periodicity_file(tmp_path: Path) -> None:
    assert read_periodicity(tmp_path, 86400) == 86400
    (tmp_path / "periodicity").write_text("60\n")
    assert read_periodicity(tmp_path, 86400) == 60
    (tmp_path / "periodicity").write_text("soon")
    assert read_periodicity(tmp_path, 86400) == 86400
    assert not (tmp_path / "periodicity").exists()


def test_retention(tmp_path: Path) -> None:
    p = make(tmp_path)
    assert not p.retention_refuses(1000.0)
    (p.path / ".slapos-retention-lock-delay").write_text("1.0")
    assert p.retention_refuses(1000.0)
    assert float((p.path / ".slapos-retention-lock-date").read_text()) == 1000.0 + 86400
    assert p.retention_refuses(1000.0 + 86399)
    assert not p.retention_refuses(1000.0 + 86401)


def test_empty_keeps_the_directory(tmp_path: Path) -> None:
    p = make(tmp_path)
    (p.path / "a" / "b").mkdir(parents=True)
    (p.path / "a" / "b" / "f").write_text("x")
    (p.path / "a" / "b").chmod(0o500)
    (p.path / "link").symlink_to("/etc")
    (p.path / ".hidden").write_text("")
    p.empty()
    assert os.listdir(p.path) == []
    assert p.path.stat().st_mode & 0o777 == 0o750


def test_prepare_checks(tmp_path: Path) -> None:
    p = make(tmp_path)
    c = SlapConnection("C", "slappart0", "http://m", "http://sr")
    with pytest.raises(PartitionError, match="is not installed"):
        p.prepare(c, 0, False)
    (tmp_path / "sr").mkdir()
    with pytest.raises(PartitionError, match="not correctly installed"):
        p.prepare(c, 0, False)
    (tmp_path / "sr" / "template.cfg").write_text("[buildout]\n")  # legacy name works
    p.prepare(c, 2, False)
    assert (p.path / "buildout.cfg").stat().st_mode & 0o777 == 0o640
    assert (p.path / ".slapos-retention-lock-delay").read_text() == "2.0"
    p.path.chmod(0o755)
    with pytest.raises(PartitionError, match="chmod 750"):
        p.prepare(c, 0, False)
