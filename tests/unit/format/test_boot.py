from __future__ import annotations

from pathlib import Path

import pytest

from slapos.format.boot import BootError, BootSettings, boot
from slapos.system import Completed


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeRunner:
    """Answers `ip -j ...` with an interface that gains IPv6 after `ready_after` calls."""

    def __init__(self, ready_after: int = 0) -> None:
        self.calls = 0
        self.ready_after = ready_after

    def run(self, argv, **kw) -> Completed:
        argv = tuple(argv)
        if argv[:4] == ("ip", "-j", "-d", "addr"):
            self.calls += 1
            addr = (
                '[{"family":"inet6","local":"2001:db8::1","prefixlen":64,"scope":"global"}]'
                if self.calls > self.ready_after
                else "[]"
            )
            return Completed(argv, 0, f'[{{"ifname":"eth0","addr_info":{addr}}}]')
        return Completed(argv, 0, "[]")


def settings(tmp_path: Path, **kw) -> BootSettings:
    values = {
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
    clock, runner = FakeClock(), FakeRunner(ready_after=2)
    results = iter([1, 1, 0])
    bangs: list[str] = []
    boot(
        settings(tmp_path, message="Power cut"),
        runner=runner,
        clock=clock,
        run_format=lambda: next(results),
        run_bang=lambda m: bangs.append(m) or 0,
    )
    assert runner.calls == 3
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
            runner=FakeRunner(ready_after=10**6),
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
