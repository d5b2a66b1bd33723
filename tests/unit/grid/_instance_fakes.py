"""Fakes for the instance engine's unit tests: partitions and a computer as the slap
library gives them, a scripted Runner, supervisord's stand-in and a clock."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slapos.config import NodeConfig
from slapos.grid.instance import Node
from slapos.slap.exception import NotFoundError
from slapos.system import Completed, Credentials


@dataclass
class FakeRelease:
    url: str

    def getURI(self) -> str:
        return self.url


@dataclass
class FakePartition:
    id: str
    state: str = "started"
    url: str | None = "http://sr/software.cfg"
    parameters: dict[str, Any] = field(default_factory=dict)
    access_status: Any = None
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def getId(self) -> str:
        return self.id

    def getState(self) -> str:
        return self.state

    def getSoftwareRelease(self) -> FakeRelease:
        if self.url is None:
            raise NotFoundError("no software release")
        return FakeRelease(self.url)

    def getInstanceParameterDict(self) -> dict[str, Any]:
        return dict(self.parameters)

    def getAccessStatus(self) -> Any:
        return self.access_status

    def getCertificate(self) -> dict[str, str]:
        return {"certificate": "CERT", "key": "KEY"}

    def started(self) -> None:
        self.calls.append(("started", None))

    def stopped(self) -> None:
        self.calls.append(("stopped", None))

    def destroyed(self) -> None:
        self.calls.append(("destroyed", None))

    def error(self, message: str) -> None:
        self.calls.append(("error", message))

    def setComputerPartitionRelatedInstanceList(self, refs: list[str]) -> None:
        self.calls.append(("related", refs))

    def reported(self) -> list[str]:
        return [name for name, _ in self.calls]


@dataclass
class FakeComputer:
    partitions: list[FakePartition]
    down: bool = False

    def getComputerPartitionList(self) -> list[FakePartition]:
        if self.down:
            from slapos.slap.exception import ConnectionError as SlapConnectionError

            raise SlapConnectionError("master unreachable")
        return list(self.partitions)


@dataclass
class FakeServices:
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


#: (argv, cwd) -> (returncode, output) ; may write files as buildout would.
Script = Callable[[tuple[str, ...], Path], tuple[int, str]]


def ok_buildout(argv: tuple[str, ...], cwd: Path) -> tuple[int, str]:
    return 0, "Installing web.\n"


@dataclass
class FakeRunner:
    script: Script = ok_buildout
    calls: list[tuple[tuple[str, ...], Path | None]] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        user: Credentials | None = None,
        umask: int | None = None,
        timeout: float | None = None,
        on_line: Callable[[str], None] | None = None,
        capture: bool = True,
    ) -> Completed:
        argv = tuple(str(a) for a in argv)
        self.calls.append((argv, cwd))
        assert cwd is not None
        code, output = self.script(argv, cwd)
        if code == -9:
            return Completed(argv, -9, output, timed_out=True)
        return Completed(argv, code, output)


@dataclass
class FakeClock:
    now: float = 1_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_layout(
    tmp_path: Path, partitions: int = 3, url: str = "http://sr/software.cfg"
) -> NodeConfig:
    """Roots, partition directories (0750) and an installed release for `url`."""
    from slapos.grid.utils import software_hash

    software_root, instance_root = tmp_path / "soft", tmp_path / "inst"
    sr = software_root / software_hash(url)
    (sr / "bin").mkdir(parents=True)
    (sr / "bin" / "buildout").write_text("#!/usr/bin/python3\n")
    (sr / "instance.cfg").write_text("[buildout]\nparts = web\n")
    for i in range(partitions):
        p = instance_root / f"slappart{i}"
        p.mkdir(parents=True)
        os.chmod(p, 0o750)
    return NodeConfig(
        path=tmp_path / "slapos.cfg",
        computer_id="COMP-1",
        master_url="http://master.invalid/",
        software_root=software_root,
        instance_root=instance_root,
        root_check=False,
    )


def make_node(
    config: NodeConfig, runner: FakeRunner | None = None, clock: FakeClock | None = None
) -> Node:
    return Node(config, runner or FakeRunner(), clock or FakeClock(), {"PATH": "/usr/bin"}, False)
