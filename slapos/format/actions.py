"""The changes node format can make, as frozen data.

Each action says what it does (`describe()`) and the equivalent command line (`argv()`):
commands (useradd, ip ...) are run as that argv by apply.py, file-system actions are done
with os calls there. plan.py only builds these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slapos.wording import counted


@dataclass(frozen=True)
class Action:
    """Base class: a change to the host."""

    def argv(self) -> tuple[str, ...]:
        raise NotImplementedError

    #: True when apply runs argv() as a program; False when it makes the change with os
    #: calls (argv() then only shows the equivalent command)
    is_command: ClassVar[bool] = True

    def describe(self) -> str:
        return " ".join(self.argv())


@dataclass(frozen=True)
class AddGroup(Action):
    name: str

    def argv(self) -> tuple[str, ...]:
        return ("groupadd", self.name)


@dataclass(frozen=True)
class AddUser(Action):
    name: str
    home: str
    groups: tuple[str, ...] = ()
    shell: str = "/bin/sh"

    def argv(self) -> tuple[str, ...]:
        extra = ("-G", ",".join(self.groups)) if self.groups else ()
        return (
            "useradd",
            "-d",
            self.home,
            "-g",
            self.name,
            "-s",
            self.shell,
            "-r",
            *extra,
            self.name,
        )


@dataclass(frozen=True)
class ModifyUser(Action):
    name: str
    home: str
    groups: tuple[str, ...] = ()
    shell: str = "/bin/sh"

    def argv(self) -> tuple[str, ...]:
        extra = ("-aG", ",".join(self.groups)) if self.groups else ()
        return ("usermod", "-d", self.home, "-g", self.name, "-s", self.shell, *extra, self.name)


@dataclass(frozen=True)
class LockPassword(Action):
    name: str

    def argv(self) -> tuple[str, ...]:
        return ("passwd", "-l", self.name)


@dataclass(frozen=True)
class SetSysctl(Action):
    key: str
    value: str

    def argv(self) -> tuple[str, ...]:
        return ("sysctl", "-q", f"{self.key}={self.value}")


@dataclass(frozen=True)
class AddAddress(Action):
    address: str  # addr/prefixlen
    dev: str
    noprefixroute: bool = False

    def argv(self) -> tuple[str, ...]:
        tail = ("noprefixroute",) if self.noprefixroute else ()
        return ("ip", "addr", "add", self.address, "dev", self.dev, *tail)


@dataclass(frozen=True)
class AddTuntap(Action):
    name: str
    mode: str  # "tap" or "tun"
    owner: str

    def argv(self) -> tuple[str, ...]:
        return ("ip", "tuntap", "add", "dev", self.name, "mode", self.mode, "user", self.owner)


@dataclass(frozen=True)
class SetLinkUp(Action):
    name: str

    def argv(self) -> tuple[str, ...]:
        return ("ip", "link", "set", self.name, "up")


@dataclass(frozen=True)
class AddRoute(Action):
    dst: str
    dev: str
    family: int = 6
    via: str | None = None
    local: bool = False

    def argv(self) -> tuple[str, ...]:
        head = ("ip", "-6") if self.family == 6 else ("ip",)
        kind = ("local",) if self.local else ()
        via = ("via", self.via) if self.via else ()
        return (*head, "route", "add", *kind, self.dst, "dev", self.dev, *via)


@dataclass(frozen=True)
class DeleteRoute(Action):
    dst: str
    dev: str
    family: int = 6

    def argv(self) -> tuple[str, ...]:
        head = ("ip", "-6") if self.family == 6 else ("ip",)
        return (*head, "route", "del", self.dst, "dev", self.dev)


@dataclass(frozen=True)
class MakeDir(Action):
    is_command = False
    path: str
    mode: int
    parents: bool = False

    def argv(self) -> tuple[str, ...]:
        return ("mkdir", *(("-p",) if self.parents else ()), "-m", f"{self.mode:04o}", self.path)


@dataclass(frozen=True)
class ChangeMode(Action):
    is_command = False
    path: str
    mode: int

    def argv(self) -> tuple[str, ...]:
        return ("chmod", f"{self.mode:04o}", self.path)


@dataclass(frozen=True)
class ChangeOwner(Action):
    is_command = False
    path: str
    user: str
    group: str

    def argv(self) -> tuple[str, ...]:
        return ("chown", f"{self.user}:{self.group}", self.path)


@dataclass(frozen=True)
class WriteFile(Action):
    is_command = False
    path: str
    content: bytes
    mode: int = 0o644
    #: the zip archive that keeps every version of the file (computer_xml history): the
    #: content replaced goes there first, and the first version once written.
    archive: str | None = None

    def argv(self) -> tuple[str, ...]:
        return ("write", self.path)

    def describe(self) -> str:
        kept = f" (versions kept in {self.archive})" if self.archive else ""
        return (
            f"write {self.path} ({counted(len(self.content), 'byte')}, mode {self.mode:04o}){kept}"
        )
