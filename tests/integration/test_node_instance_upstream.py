"""Upstream 1.26.1's `slapos node instance` and ours deploy the same release into the same
layout: same files in the partition, same supervisord program names."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from tests.fixtures.grid_instance import BuiltSoftware, InstanceNode
from tests.fixtures.upstream import Upstream, start_upstream_proxy


def partition_files(path: Path) -> set[str]:
    """Relative paths in a partition; slapgrid's own bookkeeping (.slapgrid/) aside."""
    found = set()
    for root, dirs, files in os.walk(path):
        rel = os.path.relpath(root, path)
        if rel.split(os.sep)[0] == ".slapgrid":
            continue
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in [*files, *dirs]:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def programs(node: InstanceNode, partition_id: str) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    parser.read(node.instance_root / "etc" / "supervisord.conf.d" / f"{partition_id}.conf")
    return {s: dict(parser[s]) for s in parser.sections()}


def test_same_layout_as_upstream(
    upstream: Upstream,
    upstream_proxy,
    instance_node_factory,
    built_sr_instance: BuiltSoftware,
    tmp_path: Path,
) -> None:
    second = start_upstream_proxy(upstream, tmp_path / "second")
    other_master = next(second)
    try:
        nodes = []
        for master in (upstream_proxy, other_master):
            node = instance_node_factory(master, partitions=1, software=built_sr_instance)
            # No promise: as root, upstream's promise launcher drops privileges and then
            # cannot import from its interpreter here (under /root, mode 0700).
            node.request(built_sr_instance.url, "web", promise="none")
            nodes.append(node)
        theirs, ours = nodes
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLAPOS_")}
        done = upstream.run("node", "instance", "--cfg", str(theirs.config), "--now", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        mine = ours.slapos("node", "instance", "--now")
        assert mine.returncode == 0, mine.stderr

        assert partition_files(ours.partition("slappart0")) == partition_files(
            theirs.partition("slappart0")
        )

        def profile(node: InstanceNode) -> list[str]:
            text = (node.partition("slappart0") / "buildout.cfg").read_text()
            return [line for line in text.splitlines() if not line.startswith("#")]

        assert profile(ours) == [
            line.replace(str(theirs.base), str(ours.base)).replace(
                theirs.master_url, ours.master_url
            )
            for line in profile(theirs)
        ]
        their_programs, our_programs = programs(theirs, "slappart0"), programs(ours, "slappart0")
        assert set(our_programs) == set(their_programs)
        for section, values in their_programs.items():
            keys = ("process_name", "autostart", "autorestart", "stopasgroup", "killasgroup")
            assert {k: our_programs[section].get(k) for k in keys} == {
                k: values.get(k) for k in keys
            }, section
    finally:
        next(second, None)
