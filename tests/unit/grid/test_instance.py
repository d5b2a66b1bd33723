"""The instance engine with fakes: skip rule, states, failures, exit codes, offline mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slapos.grid.instance import InstanceEngine, UnknownPartitionError
from slapos.grid.instance_io import InstanceOptions
from tests.fakes import Call, FakeClock, FakeRunner
from tests.fakes.master import FakeComputer, FakePartition
from tests.fakes.services import FakeServices
from tests.unit.grid._instance_node import INSTALLED, make_layout, make_node


def engine(
    tmp_path: Path,
    parts: list[FakePartition],
    runner: FakeRunner | None = None,
    options: InstanceOptions | None = None,
    clock: FakeClock | None = None,
):
    config = make_layout(tmp_path)
    services = FakeServices()
    lines: list[str] = []
    e = InstanceEngine(
        make_node(config, runner, clock),
        options or InstanceOptions(),
        FakeComputer(parts),
        progress=lines.append,
        services=services,
    )
    return e, services, lines, config


def promise(config, partition_id: str, text: str) -> None:
    folder = config.instance_root / partition_id / "etc" / "promise"
    folder.mkdir(parents=True)
    (folder / "check").write_text(text)
    (folder / "check").chmod(0o755)


def test_started_partition_is_deployed_and_reported(tmp_path: Path) -> None:
    p = FakePartition("slappart0", parameters={"timestamp": "123"})
    e, services, lines, config = engine(tmp_path, [p])
    result = e.run()
    assert result.exit_code == 0
    assert services.started == ["slappart0"]
    assert p.reports == ["started"]
    part = config.instance_root / "slappart0"
    assert (part / ".timestamp").read_text() == "123"
    assert (part / "software_release").is_symlink()
    text = (part / "buildout.cfg").read_text()
    assert text.startswith("[buildout]\nparts = web\n")
    assert "partition-id = slappart0" in text and "requested-state = started" in text
    assert (part / ".slapos-retention-lock-delay").read_text() == "0.0"
    assert lines == ["slappart0: processed (0.0s)"]


def test_up_to_date_partition_is_skipped(tmp_path: Path) -> None:
    p = FakePartition("slappart0", parameters={"timestamp": "123"})
    runner = FakeRunner(default=INSTALLED)
    e, _services, lines, _ = engine(tmp_path, [p], runner)
    e.run()
    calls = len(runner.calls)
    lines.clear()
    assert e.run().exit_code == 0
    assert len(runner.calls) == calls  # no buildout
    assert lines == ["slappart0: skipped, up to date (0.0s)"]
    # the access status is unknown and "started" was already said: nothing posted again
    assert p.reports == ["started"]


def test_periodicity_and_new_timestamp_reprocess(tmp_path: Path) -> None:
    p = FakePartition("slappart0", parameters={"timestamp": "1"})
    clock = FakeClock()
    runner = FakeRunner(default=INSTALLED)
    e, _, lines, config = engine(tmp_path, [p], runner, clock=clock)
    e.run()
    (config.instance_root / "slappart0" / ".timestamp").touch()
    os.utime(config.instance_root / "slappart0" / ".timestamp", (clock.now, clock.now))
    clock.now += 86400 + 1
    lines.clear()
    e.run()
    assert lines == ["slappart0: processed (0.0s)"]
    p.parameters["timestamp"] = "2"
    lines.clear()
    e.run()
    assert lines == ["slappart0: processed (0.0s)"]


def test_force_and_force_stop(tmp_path: Path) -> None:
    p = FakePartition("slappart0", parameters={"timestamp": "1"})
    e, services, lines, _config = engine(tmp_path, [p])
    e.run()
    e.options = InstanceOptions(force_stop=True)
    lines.clear()
    e.run()
    assert lines == ["slappart0: processed (0.0s)"]
    assert services.stopped == ["slappart0"]
    assert p.reports == ["started"]  # nothing posted for the forced stop


def test_stopped_and_destroyed(tmp_path: Path) -> None:
    stopped = FakePartition("slappart0", state="stopped")
    destroyed = FakePartition("slappart1", state="destroyed")
    e, services, _, config = engine(tmp_path, [stopped, destroyed])
    assert e.run().exit_code == 0
    assert services.stopped == ["slappart0", "slappart1"]
    assert stopped.reports == ["stopped"]
    assert destroyed.reports == ["stopped"]
    assert not (config.instance_root / "slappart1" / "buildout.cfg").exists()


def test_free_partition_is_cleaned_and_not_reported(tmp_path: Path) -> None:
    free = FakePartition("slappart0", state="destroyed", url=None)
    e, _, lines, config = engine(tmp_path, [free])
    path = config.instance_root / "slappart0"
    (path / ".slapgrid").mkdir()
    (path / ".timestamp").write_text("1")
    assert e.run().exit_code == 0
    assert sorted(os.listdir(path)) == []
    assert free.reports == [] and lines == []


def test_buildout_failure_others_processed_exit_1(tmp_path: Path) -> None:
    def script(call: Call) -> tuple[int, str]:
        assert call.cwd is not None
        return (
            (1, "While:\n  Installing web.\nError: boom\n")
            if call.cwd.name == "slappart0"
            else (0, "")
        )

    bad, good = FakePartition("slappart0"), FakePartition("slappart1")
    e, _services, lines, config = engine(tmp_path, [bad, good], FakeRunner(default=script))
    result = e.run()
    assert result.exit_code == 1
    assert [o.partition_id for o in result.failed] == ["slappart0"]
    assert bad.reports == ["error"] and "boom" in bad.errors[0]
    assert good.reports == ["started"]
    assert (config.instance_root / "slappart0" / ".slapgrid-slappart0-error.log").exists()
    assert lines[0].startswith("slappart0: failed (0.0s): buildout failed in")


def test_promise_failure_exit_2_and_precedence(tmp_path: Path) -> None:
    def script(call: Call) -> tuple[int, str]:
        if call.argv[0].endswith("/check"):
            return 1, "it is broken\n"
        return 0, ""

    p = FakePartition("slappart0", parameters={"timestamp": "5"})
    e, _, _, config = engine(tmp_path, [p], FakeRunner(default=script))
    promise(config, "slappart0", "#!/bin/sh\nexit 1\n")
    result = e.run()
    assert result.exit_code == 2
    assert p.reports == ["error"]
    assert p.errors == ["Promise 'check' failed with output: it is broken"]
    assert not (config.instance_root / "slappart0" / ".timestamp").exists()


def test_missing_directory_and_missing_release(tmp_path: Path) -> None:
    ghost = FakePartition("slappart9")
    other = FakePartition("slappart1", url="http://other/software.cfg")
    e, _, _, _ = engine(tmp_path, [ghost, other])
    result = e.run()
    assert result.exit_code == 1
    assert "does not exist" in ghost.errors[0]
    assert "is not installed" in other.errors[0]


def test_only_cp(tmp_path: Path) -> None:
    a, b = FakePartition("slappart0"), FakePartition("slappart1")
    e, services, _, _ = engine(tmp_path, [a, b], options=InstanceOptions(only_cp=("slappart1",)))
    e.run()
    assert services.started == ["slappart1"]
    e.options = InstanceOptions(only_cp=("slappart7",))
    with pytest.raises(UnknownPartitionError, match="slappart7"):
        e.run()


def test_offline_mode_starts_everything_exit_3(tmp_path: Path) -> None:
    e, services, _, _ = engine(tmp_path, [FakePartition("slappart0")])
    e._computer.down = True
    result = e.run()
    assert result.exit_code == 3
    assert services.all_started == 1


def test_transaction_file_is_sent(tmp_path: Path) -> None:
    def script(call: Call) -> tuple[int, str]:
        assert call.cwd is not None
        (call.cwd / ".slapos-request-transaction-slappart0").write_text("child1\n\nchild2\n")
        return 0, ""

    p = FakePartition("slappart0")
    e, _, _, _ = engine(tmp_path, [p], FakeRunner(default=script))
    e.run()
    assert p.reports == ["started", "related"] and p.related == [["child1", "child2"]]


def test_certificates_and_free_space(tmp_path: Path) -> None:
    import dataclasses

    p = FakePartition("slappart0")
    e, _, _, config = engine(tmp_path, [p])
    repo = tmp_path / "certs"
    e.config = dataclasses.replace(config, certificate_repository_path=repo)
    e.node = dataclasses.replace(e.node, config=e.config)
    assert e.run().exit_code == 0
    assert (repo / "slappart0.crt").read_text() == "CERT"
    assert (repo / "slappart0.key").stat().st_mode & 0o777 == 0o400
    text = (config.instance_root / "slappart0" / "buildout.cfg").read_text()
    assert f"key-file = {repo}/slappart0.key" in text

    e.config = dataclasses.replace(e.config, instance_min_free_space="1000000T")
    e.node = dataclasses.replace(e.node, config=e.config)
    e.options = InstanceOptions(force=True)
    result = e.run()
    assert result.exit_code == 1
    assert "not enough free space" in result.failed[0].error
