"""node prune: shared parts no signature names are removed, pass after pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from slapos.config import NodeConfig
from slapos.grid.prune import PruneRefused, prune


def config(tmp_path: Path, shared: bool = True) -> NodeConfig:
    return NodeConfig(
        path=tmp_path / "slapos.cfg",
        computer_id="C",
        master_url="http://m",
        software_root=tmp_path / "soft",
        instance_root=tmp_path / "inst",
        shared_part_list=(str(tmp_path / "old-shared"), str(tmp_path / "shared")) if shared else (),
    )


def part(root: Path, name: str, signature: str = "") -> Path:
    path = root / name.split("/")[0] / name.split("/")[1]
    path.mkdir(parents=True)
    if signature:
        (path / ".buildout-shared.json").write_text(signature)
    return path


def test_prune_passes_and_dry_run(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    used = part(shared, "python/aaa111")
    lib_of_unused = part(shared, "zlib/ccc333")
    unused = part(shared, "perl/bbb222", signature="depends on ccc333")
    (tmp_path / "soft" / "0123" / "bin").mkdir(parents=True)
    (tmp_path / "soft" / "0123" / ".installed.cfg").write_text(f"location = {used}\n")
    (tmp_path / "inst").mkdir()
    cfg = config(tmp_path)
    # a dry run tells the whole story: zlib is only used by what would go
    assert prune(cfg, dry_run=True) == [str(unused), str(lib_of_unused)]
    assert unused.exists()
    removed = prune(cfg, dry_run=False)
    assert removed == [str(unused), str(lib_of_unused)]  # second pass frees zlib
    assert used.exists() and not unused.exists() and not lib_of_unused.exists()


def test_nested_slapos_keeps_its_parts(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    nested_used = part(shared, "openssl/ddd444")
    nested = tmp_path / "inst" / "slappart0" / "srv" / "runner"
    (nested / "soft" / "x").mkdir(parents=True)
    (nested / "soft" / "x" / ".installed.cfg").write_text("uses ddd444\n")
    (nested / "slapos.cfg").write_text(
        f"[slapos]\nsoftware_root = {nested / 'soft'}\nshared_part_list = {shared}\n"
    )
    (tmp_path / "soft").mkdir()
    assert prune(config(tmp_path), dry_run=False) == []
    assert nested_used.exists()


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(PruneRefused, match="shared_part_list"):
        prune(config(tmp_path, shared=False), dry_run=False)
