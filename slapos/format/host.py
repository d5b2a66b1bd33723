"""The host as node format sees it: its users, groups, paths, files and network.

apply.py reads the host into a `HostState`; plan.py plans against it. Plain data: nothing
here reads or changes the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from slapos.format.netif import NetworkState


@dataclass(frozen=True)
class UserEntry:
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PathEntry:
    uid: int
    gid: int
    mode: int  # permission bits only


@dataclass(frozen=True)
class HostState:
    """What plan_format needs to know about the host."""

    users: Mapping[str, UserEntry] = field(default_factory=dict)
    groups: Mapping[str, int] = field(default_factory=dict)
    paths: Mapping[str, PathEntry] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    network: NetworkState = field(default_factory=NetworkState)
    storage_dirs: tuple[str, ...] = ()
    os_type: str | None = None
    python_version: str | None = None
    slapos_version: str | None = None
