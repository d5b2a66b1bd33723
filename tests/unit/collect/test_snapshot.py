from __future__ import annotations

import os
from pathlib import Path

import psutil

from slapos.collect.snapshot import (
    computer_sample,
    disk_samples,
    folder_size_kib,
    parse_sensors,
    process_sample,
    system_sample,
    temperature_samples,
    user_processes,
)
from tests.fakes import FakeRunner

SENSORS = """coretemp-isa-0000
Adapter: ISA adapter
Package id 0:
  temp1_input: 45.000
  temp1_max: 80.000
  temp1_crit: 100.000
  temp1_crit_alarm: 0.000
Core 0:
  temp2_input: 85.000
  temp2_max: 80.000
  temp2_crit: 100.000

acpitz-acpi-0
Adapter: ACPI interface
temp1:
  temp1_input: 27.800

nvme-pci-0100
Adapter: PCI adapter
Composite:
  temp1_input: 105.000
  temp1_max: 81.850
  temp1_crit: 84.850
"""


def test_parse_sensors() -> None:
    samples = [(s.sensor_id, s.temperature, s.alarm) for s in parse_sensors(SENSORS)]
    assert samples == [
        ("coretemp-isa-0000/Package id 0", 45.0, 0),
        ("coretemp-isa-0000/Core 0", 85.0, 1),
        ("acpitz-acpi-0/temp1", 27.8, 0),  # no limits given: 1000
        ("nvme-pci-0100/Composite", 105.0, 2),
    ]


def test_temperature_samples_tolerates_missing_sensors() -> None:
    assert temperature_samples(None) == []
    assert temperature_samples(FakeRunner({("sensors",): (127, "sensors: not found")})) == []
    assert temperature_samples(FakeRunner({("sensors",): (1, "No sensors found!\n")})) == []
    assert len(temperature_samples(FakeRunner({("sensors",): (0, SENSORS)}))) == 4


def test_own_process_sample() -> None:
    me = psutil.Process()
    user = me.username()
    procs = user_processes({user})
    assert me.pid in {p.pid for p in procs}
    sample = process_sample(next(p for p in procs if p.pid == me.pid))
    assert sample is not None
    assert sample.user == user and sample.process.startswith(f"{me.pid}-")
    assert sample.memory_rss > 0 and sample.cpu_time > 0 and sample.cpu_num_threads >= 1
    assert user_processes({"no-such-user-here"}) == []


def test_machine_samples() -> None:
    system = system_sample(0.05)
    assert 0 <= system.cpu_percent <= 100 and system.memory_used > 0 and system.memory_free > 0
    disks = disk_samples()
    assert disks and len({d.partition for d in disks}) == len(disks)
    computer = computer_sample(disks)
    assert computer.cpu_num_core == os.cpu_count()
    assert computer.partition_list.split(";")[0] == f"{disks[0].partition}={disks[0].total}"
    assert computer.row("d", "t")[1:3] == (0, 0)


def test_folder_size(tmp_path: Path) -> None:
    part = tmp_path / "slappart0"
    part.mkdir()
    (part / "a").write_bytes(os.urandom(100 * 1024))
    os.link(part / "a", part / "a-again")  # counted once, like du
    extra = tmp_path / "extra-disk"
    extra.mkdir()
    (extra / "b").write_bytes(os.urandom(200 * 1024))
    (part / "DATA").mkdir()
    os.symlink(extra, part / "DATA" / "disk1")
    size = folder_size_kib(part)
    assert 300 <= size <= 400
    assert folder_size_kib(tmp_path / "missing") == 0
