"""`slapos node prune`: delete shared parts (slapos.recipe.cmmi) no software uses any more
(node.md §9.3).

A shared part `<shared root>/<name>/<hash>` is used when its hash appears in a "signature"
file of some software: `.installed.cfg`, `bin/*`, the `.buildout-shared.json` and
`.*signature` files of other shared parts, including those of nested SlapOS nodes found
under instance_root. Removing a part can free the parts only it used, so passes repeat
until one removes nothing.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from slapos.config import IniFile, NodeConfig
from slapos.errors import ConfigError, ExitCode, SlapOSError

log = logging.getLogger(__name__)


class PruneRefused(SlapOSError):
    exit_code = ExitCode.PRUNE_REFUSED


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):  # binaries and unreadable files carry no signature
        return None


def signatures(software_root: Path, shared_root: Path, ignored: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    patterns = [
        os.path.join(software_root, "*", ".installed.cfg"),
        os.path.join(software_root, "*", "bin", "*"),
        os.path.join(shared_root, "*", "*", ".buildout-shared.json"),
        os.path.join(shared_root, "*", "*", ".*signature"),
    ]
    for pattern in patterns:
        for path in glob.glob(pattern):
            if any(path.startswith(i + os.sep) for i in ignored):
                continue
            text = _read(path)
            if text is not None:
                found[path] = text
    return found


def nested_signatures(instance_root: Path, visited: set[Path]) -> dict[str, str]:
    """Signatures of nested SlapOS nodes: every slapos.cfg below instance_root."""
    found: dict[str, str] = {}
    if instance_root in visited or not instance_root.is_dir():
        return found
    visited.add(instance_root)
    for dirpath, _dirs, files in os.walk(instance_root):
        if "slapos.cfg" not in files:
            continue
        try:
            ini = IniFile.read(Path(dirpath) / "slapos.cfg")
        except ConfigError:
            continue
        software = ini.get("slapos", "software_root")
        shared = ini.get_list("slapos", "shared_part_list")
        instance = ini.get("slapos", "instance_root")
        if software and shared:
            found.update(signatures(Path(software.strip()), Path(shared[-1]), set()))
        if instance:
            found.update(nested_signatures(Path(instance.strip()), visited))
    return found


def _one_pass(
    shared_root: Path,
    config: NodeConfig,
    additional: Iterable[Path],
    ignored: set[str],
    dry_run: bool,
) -> list[str]:
    sigs = signatures(config.software_root, shared_root, ignored)
    for directory in additional:
        if directory.exists():
            sigs.update(signatures(directory, shared_root, ignored))
        else:
            log.warning("additional software directory does not exist: %s", directory)
    sigs.update(nested_signatures(config.instance_root, set()))
    texts = list(sigs.values())
    removed = []
    for part in sorted(glob.glob(os.path.join(shared_root, "*", "*"))):
        if part in ignored:
            continue
        name = os.path.basename(part)
        if any(name in text for text in texts):
            continue
        if not dry_run:
            with contextlib.suppress(FileNotFoundError):
                _rmtree(part)
        log.warning("unused shared part %s%s", part, "" if dry_run else " ... removed")
        removed.append(part)
    return removed


def _rmtree(path: str) -> None:
    def writable(func: object, p: str, exc: object) -> None:
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
            shutil.rmtree(p)
        else:
            os.unlink(p)

    shutil.rmtree(path, onerror=writable)


def prune(config: NodeConfig, *, dry_run: bool, additional: Iterable[Path] = ()) -> list[str]:
    """Remove (or with `dry_run` list) unused shared parts; returns their paths."""
    if not config.shared_part_list:
        raise PruneRefused("no shared_part_list in [slapos] of the configuration: nothing to prune")
    pidfile = config.pidfile_software
    if not dry_run and pidfile and os.path.exists(pidfile):
        raise PruneRefused(f"cannot prune while software is running ({pidfile} exists)")
    shared_root = Path(config.shared_part_list[-1])
    log.info("pruning shared parts in %s", shared_root)
    additional = list(additional)
    ignored: set[str] = set()
    removed: list[str] = []
    while True:
        batch = _one_pass(shared_root, config, additional, ignored, dry_run)
        if not batch:
            return removed
        removed += batch
        ignored.update(batch)
