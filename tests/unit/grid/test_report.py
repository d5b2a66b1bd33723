"""node report's destruction: retention, services still running, sbin/destroy, emptying."""

from __future__ import annotations

import os
from pathlib import Path

from slapos.config import NodeConfig
from slapos.grid.master import MasterComputer
from slapos.grid.report import ReportEngine
from tests.fakes import FakeClock, FakeRunner
from tests.fakes.master import FakeComputer, FakePartition
from tests.fakes.services import FakeServices
from tests.unit.grid._instance_node import make_layout, make_node


def engine(tmp_path: Path, parts: list[FakePartition], runner: FakeRunner | None = None):
    config = make_layout(tmp_path)
    services = FakeServices()
    e = ReportEngine(make_node(config, runner, FakeClock()), FakeComputer(parts), services)
    return e, services, config


def test_destroyed_partition_is_emptied_and_reported(tmp_path: Path) -> None:
    p = FakePartition("slappart0", state="destroyed")
    started = FakePartition("slappart1")
    e, services, config = engine(tmp_path, [p, started])
    path = config.instance_root / "slappart0"
    (path / "etc").mkdir()
    (path / ".slapos-resource").write_text("{}")
    result = e.run()
    assert result.exit_code == 0 and result.destroyed == ["slappart0"]
    assert os.listdir(path) == []
    assert p.reports == ["stopped", "destroyed"]
    assert started.reports == []
    assert services.stopped == ["slappart0", "slappart0"]


def test_usage_sent_once_before_destruction(tmp_path: Path) -> None:
    p = FakePartition("slappart0", state="destroyed")
    computer = FakeComputer([p])
    config = make_layout(tmp_path)
    sent: list[tuple[NodeConfig, MasterComputer, list[str]]] = []

    def send_usage(given: NodeConfig, master: MasterComputer) -> None:
        sent.append((given, master, list(p.reports)))

    node = make_node(config, None, FakeClock())
    ReportEngine(node, computer, FakeServices(), send_usage=send_usage).run()
    assert sent == [(config, computer, [])]  # before the partition was reported stopped
    assert p.reports == ["stopped", "destroyed"]


def test_retention_delay_keeps_the_data(tmp_path: Path) -> None:
    p = FakePartition("slappart0", state="destroyed")
    e, _, config = engine(tmp_path, [p])
    path = config.instance_root / "slappart0"
    (path / ".slapos-retention-lock-delay").write_text("1.5")
    (path / "data").write_text("precious")
    result = e.run()
    assert result.kept == ["slappart0"] and "destroyed" not in p.reports
    assert (path / "data").exists()


def test_waiting_services_and_failing_destroy_script(tmp_path: Path) -> None:
    waiting = FakePartition("slappart0", state="destroyed")
    failing = FakePartition("slappart1", state="destroyed")
    e, services, config = engine(
        tmp_path, [waiting, failing], FakeRunner(default=(1, "cannot unmount\n"))
    )
    (config.instance_root / "slappart0" / ".slapos-report-wait-service-list").write_text(
        "slappart0-prerm:backup\n"
    )
    services.running["slappart0-prerm:backup"] = "RUNNING"
    sbin = config.instance_root / "slappart1" / "sbin"
    sbin.mkdir()
    (sbin / "destroy").write_text("#!/bin/sh\nexit 1\n")
    result = e.run()
    assert result.kept == ["slappart0"]
    assert result.exit_code == 1 and result.failed[0][0] == "slappart1"
    assert "cannot unmount" in result.failed[0][1]
    assert "destroyed" not in failing.reports
    assert (sbin / "destroy").exists()
