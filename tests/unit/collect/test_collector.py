from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

import psutil
import pytest

from slapos.collect.collector import CollectConfig, collect
from slapos.config import IniFile, node_config_from_ini
from slapos.errors import ConfigError
from tests.fakes import FakeClock


def config_from(text: str, tmp_path: Path) -> CollectConfig:
    ini = IniFile.parse(textwrap.dedent(text), tmp_path / "slapos.cfg")
    return CollectConfig.from_node_config(
        node_config_from_ini(ini, required=("computer_id", "instance_root"))
    )


def test_config(tmp_path: Path) -> None:
    config = config_from(
        f"""\
        [slapos]
        computer_id = COMP-1
        instance_root = {tmp_path}
        collect_cache = 3
        [slapformat]
        partition_amount = 2
        user_base_name = slapuser
        partition_base_name = slappart
        [collect]
        report_disk_usage = false
        disk_snapshot_time_cycle = 60
        measure_interval = 0.1
        """,
        tmp_path,
    )
    assert config.users == {
        "slapuser0": tmp_path / "slappart0",
        "slapuser1": tmp_path / "slappart1",
    }
    assert config.days_to_preserve == 3 and not config.report_disk_usage
    assert config.disk_time_cycle == 60 and config.measure_interval == 0.1
    assert config.data_log == tmp_path / "var" / "data-log"
    assert config.disk_pid_folder == tmp_path / "var" / "run"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[slapformat]\nuser_base_name = u\n", "partition_amount is missing"),
        ("[slapformat]\npartition_amount = 2\n", "user_base_name is missing"),
        ("[slapformat]\npartition_amount = x\nuser_base_name = u\n", "expected a whole number"),
        (
            "[slapformat]\npartition_amount = 1\nuser_base_name = u\n"
            "[collect]\nmeasure_interval = soon\n",
            "measure_interval",
        ),
    ],
)
def test_config_errors(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from(f"[slapos]\ncomputer_id = C\ninstance_root = {tmp_path}\n{section}", tmp_path)


def test_heating_sensor_is_said_to_be_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The heating test is not implemented: a configured sensor gets one warning, not silence."""
    base = f"[slapos]\ncomputer_id = C\ninstance_root = {tmp_path}\n[slapformat]\n"
    base += "partition_amount = 1\nuser_base_name = u\ncomputer_model_id = m1\n"
    config_from(base + "heating_sensor_id = no_sensor\n", tmp_path)  # upstream's "none"
    assert caplog.records == []
    config_from(base + "heating_sensor_id = coretemp-isa-0000\n", tmp_path)
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"{tmp_path / 'slapos.cfg'}: [slapformat] heating_sensor_id = coretemp-isa-0000 is "
        "accepted and ignored: the heating test is not implemented"
    )


def test_collect_own_user(tmp_path: Path) -> None:
    """A run over this test's own user: its processes and the machine are stored."""
    me = psutil.Process().username()
    part = tmp_path / "part0"
    part.mkdir()
    (part / "blob").write_bytes(b"x" * (2 * 1024 * 1024))
    config = CollectConfig(
        computer_id="COMP-1",
        instance_root=tmp_path,
        users={me: part},
        measure_interval=0.05,
    )
    when = datetime.datetime(2026, 3, 20, 10, 0, tzinfo=datetime.UTC)
    result = collect(config, clock=FakeClock(when.timestamp()))
    assert result.processes >= 1 and result.folders == [me]
    from slapos.collect.db import CollectorDB

    with CollectorDB.open(config.data_log) as db:
        assert {r[0] for r in db.query("select date from user")} == {"2026-03-20"}
        assert db.count("system") == 1 and db.count("computer") == 1
    # within the time cycle, the partition is not measured again
    again = collect(config, clock=FakeClock((when + datetime.timedelta(hours=1)).timestamp()))
    assert again.folders == []
    assert sorted(p.name for p in (tmp_path / "var" / "xml_report" / "COMP-1").iterdir()) == [
        "2026-03-18.xml", "2026-03-19.xml",
    ]  # fmt: skip
