"""What the instance engine reads before it decides: one partition as the master and the
disk show it (`observe`), supervisord's program states, what a run would do to supervisord
itself. Reads only, and never fails on what this user may not read (a dry run by a user
other than root). Split from slapos.grid.instance.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from slapos.config import NodeConfig
from slapos.grid import instance_plan as plan
from slapos.grid import partition as part
from slapos.grid import supervisor as sv
from slapos.grid.master import (
    MasterPartition,
    connection_keys_of,
    parameters_of,
    software_type_of,
    software_url_of,
)
from slapos.grid.runrecord import Applied, RunRecord
from slapos.grid.utils import software_hash

log = logging.getLogger(__name__)


def _exists(path: Path) -> bool:
    """Path.exists, False where this user may not look (a dry run by another user)."""
    try:
        return path.exists()
    except PermissionError:
        return False


def _readable(path: Path) -> bool:
    """Whether this process can list `path` (capabilities count, unlike os.access)."""
    try:
        with os.scandir(path):
            return True
    except PermissionError:
        return False


def observe(
    config: NodeConfig,
    cp: MasterPartition,
    services: dict[str, dict[str, str]] | None = None,
    *,
    dry: bool = False,
) -> plan.Observation:
    """What the node sees of `cp`; with `dry`, nothing is changed, not even a bad file."""
    pid = cp.getId()
    url = software_url_of(cp)
    path = config.instance_root / pid
    slapgrid = path / ".slapgrid"
    directory = path.is_dir()
    readable = not (dry and directory) or _readable(path)
    software_path = config.software_root / software_hash(url) if url else None
    local_ts, mtime = None, None
    if directory and readable:
        with contextlib.suppress(OSError):
            local_ts = (path / ".timestamp").read_text().strip()
            mtime = (path / ".timestamp").stat().st_mtime
    periodicity = part.read_periodicity(
        software_path, config.maximum_periodicity, remove_bad=not dry
    )
    installed = software_path is not None and (
        _exists(software_path / "instance.cfg") or _exists(software_path / "template.cfg")
    )
    state = cp.getState()
    return plan.Observation(
        partition_id=pid,
        requested_state=state,
        software_url=url,
        software_type=software_type_of(cp),
        parameters=parameters_of(cp),
        directory_exists=directory,
        software_installed=installed,
        local_timestamp=local_ts,
        local_timestamp_mtime=mtime,
        periodicity=periodicity,
        applied=Applied.read(slapgrid) if directory and readable else None,
        last_run=RunRecord.read(slapgrid) if directory and readable else None,
        services=None if services is None else services.get(pid, {}),
        dirty_free=url is None
        and state == plan.DESTROYED
        and (_exists(slapgrid) or _exists(path / ".timestamp")),
        readable=readable,
        connection_keys=connection_keys_of(cp),
    )


def service_states(instance_root: Path, detail: bool = False) -> dict[str, dict[str, Any]] | None:
    """group -> program -> state (or supervisord's whole process info with `detail`);
    None when supervisord cannot be reached."""
    if not _exists(sv.SupervisordPaths.of(instance_root).socket):
        return None
    try:
        with sv.connect(instance_root, timeout=10) as s:
            processes = s.all_processes()
    except (sv.SupervisorError, OSError) as exc:
        log.debug("supervisord states unknown: %s", exc)
        return None
    states: dict[str, dict[str, Any]] = {}
    for info in processes:
        name = str(info.get("name"))
        value = info if detail else str(info.get("statename"))
        states.setdefault(str(info.get("group")), {})[name] = value
    return states


def supervisord_plan(config: NodeConfig, watchdog_command: str, launch: bool) -> str:
    """What a run would do to supervisord itself ("" when nothing)."""
    root = config.instance_root
    paths = sv.SupervisordPaths.of(root)
    wanted = sv.supervisord_config_text(paths, watchdog_command)
    done = []
    try:
        if paths.config.read_text() != wanted:
            done.append(f"{paths.config} rewritten")
    except FileNotFoundError:
        done.append(f"{paths.config} written")
    except OSError as exc:
        done.append(f"{paths.config} unreadable here ({exc.strerror}): may be rewritten")
    try:
        alive = sv.supervisord_alive(root)
    except PermissionError:
        done.append("whether supervisord runs is unknown here (permission denied)")
    else:
        if launch and not alive:
            done.append("supervisord started (it is not running)")
    return "; ".join(done)
