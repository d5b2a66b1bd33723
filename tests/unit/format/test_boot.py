from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slapos.format.boot import BootError, BootSettings, boot
from tests.fakes import Call, FakeClock, FakeRunner

ADDRESSES = ("ip", "-j", "-d", "addr")


def ip_runner(ready_after: int) -> FakeRunner:
    """`ip -j -d addr` shows eth0 gaining a global IPv6 address after `ready_after` calls;
    the route listings (`ip -j ... route`) are empty."""

    def addresses(call: Call) -> tuple[int, str]:
        calls = runner.argvs.count(call.argv)
        addr = (
            '[{"family":"inet6","local":"2001:db8::1","prefixlen":64,"scope":"global"}]'
            if calls > ready_after
            else "[]"
        )
        return 0, f'[{{"ifname":"eth0","addr_info":{addr}}}]'

    runner = FakeRunner({ADDRESSES: addresses, ("ip", "-j"): (0, "[]")})
    return runner


def settings(tmp_path: Path, **kw) -> BootSettings:
    values: dict[str, Any] = {
        "instance_root": tmp_path,
        "partition_base_name": "slappart",
        "master_host": None,
        "master_port": 80,
        "ipv6_interface": "eth0",
    }
    values.update(kw)
    return BootSettings(**values)


def test_boot_waits_for_ipv6_retries_format_bangs_and_removes_timestamps(tmp_path):
    for name in ("slappart0", "slappart1", "other"):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".timestamp").write_text("1")
    clock, runner = FakeClock(), ip_runner(ready_after=2)
    results = iter([1, 1, 0])
    bangs: list[str] = []

    def bang(message: str) -> int:
        bangs.append(message)
        return 0

    boot(
        settings(tmp_path, message="Power cut"),
        runner=runner,
        clock=clock,
        run_format=lambda: next(results),
        run_bang=bang,
    )
    assert [argv[:4] for argv in runner.argvs].count(ADDRESSES) == 3
    assert clock.sleeps == [5.0, 5.0, 15.0, 15.0]
    assert bangs == ["Power cut"]
    assert not (tmp_path / "slappart0" / ".timestamp").exists()
    assert not (tmp_path / "slappart1" / ".timestamp").exists()
    assert (tmp_path / "other" / ".timestamp").exists()


def test_boot_gives_up_after_its_deadline(tmp_path):
    clock = FakeClock()
    with pytest.raises(BootError, match="no global IPv6 address on eth0 after 60s"):
        boot(
            settings(tmp_path, ipv6_timeout=60),
            runner=ip_runner(ready_after=10**6),
            clock=clock,
            run_format=lambda: 0,
            run_bang=lambda m: 0,
        )
    with pytest.raises(BootError, match="node format still fails"):
        boot(
            settings(tmp_path, format_timeout=100, ipv6_interface=None),
            runner=FakeRunner(),
            clock=clock,
            run_format=lambda: 1,
            run_bang=lambda m: 0,
        )


def test_boot_waits_for_the_master_when_only_the_post_failed(tmp_path):
    import socket

    from slapos.errors import ExitCode

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        clock = FakeClock()
        results = iter([ExitCode.FORMAT_OFFLINE_SUCCESS, 0])
        boot(
            settings(tmp_path, ipv6_interface=None, master_host="127.0.0.1", master_port=port),
            runner=FakeRunner(),
            clock=clock,
            run_format=lambda: next(results),
            run_bang=lambda m: 0,
        )
    assert clock.sleeps == [15.0]  # the master answers at once: one pause, then format again
    with pytest.raises(BootError, match=r"node bang still fails after 40s \(last exit 1\)"):
        boot(
            settings(tmp_path, ipv6_interface=None, bang_timeout=40),
            runner=FakeRunner(),
            clock=clock,
            run_format=lambda: 0,
            run_bang=lambda m: 1,
        )
