"""A node for the instance and report engines' unit tests: roots, partitions and an
installed release in tmp_path, run through the fakes of tests/fakes."""

from __future__ import annotations

import os
from pathlib import Path

from slapos.config import NodeConfig
from slapos.grid.instance_io import Node
from tests.fakes import FakeClock, FakeRunner

#: what every command answers unless a test says otherwise: a buildout that installs `web`
INSTALLED = (0, "Installing web.\n")


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
    return Node(
        config,
        runner or FakeRunner(default=INSTALLED),
        clock or FakeClock(1_000_000.0),
        {"PATH": "/usr/bin"},
        False,
    )
