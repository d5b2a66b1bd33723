"""`FakeServices`: the instance engine's supervisord (a `slapos.grid.instance_io.ServiceControl`),
recording what it is told."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from slapos.grid.instance_io import Node, ServiceControl


@dataclass
class FakeServices:
    """Partitions started and stopped, in order; `running` answers `states()`."""

    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    all_started: int = 0
    running: dict[str, str] = field(default_factory=dict)

    def prepare(self, node: Node, watchdog_command: str, launch: bool) -> None:
        pass

    def start(self, instance_root: Path, partition_id: str, path: Path) -> None:
        self.started.append(partition_id)

    def stop(self, instance_root: Path, partition_id: str, all_files: bool = False) -> None:
        self.stopped.append(partition_id)

    def start_all(self, instance_root: Path) -> None:
        self.all_started += 1

    def states(self, instance_root: Path, names: list[str]) -> dict[str, str]:
        return {n: self.running[n] for n in names if n in self.running}


_check: ServiceControl = FakeServices()  # mypy: the fake stands for the protocol
