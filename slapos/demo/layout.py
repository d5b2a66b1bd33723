"""Where the demo keeps its things in DIR, and the users it runs as when root.

The paths are `slapos configure local`'s (its `LocalSettings`), plus the copy of the demo
release; `DEMO_ENTRIES` lists everything the demo makes in DIR, which is what --destroy
removes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slapos.cli.configure.local_setup import LocalSettings
from slapos.errors import SlapOSError

SOFTWARE_NAME = "demo"  # the requested instance's name
PARTITIONS = 3
SERVICE_NAME = "demo-web"  # the demo release's service (etc/service/demo-web in its partition)
DEFAULT_PORT = 8080
#: What the demo makes in DIR (configure local, node format, the proxy, the release):
#: all that --destroy removes.
DEMO_ENTRIES = (
    "etc", "log", "srv", "soft", "software-release", "var", "slapos.xml*", "slapproxy.db*",
    "slapformat-definition.cfg",
)  # fmt: skip


class DemoError(SlapOSError):
    """A step of the demo failed; the message says which and where its log is."""


@dataclass(frozen=True)
class Users:
    """The users node format creates when the demo runs as root."""

    base_name: str = "slapuser"
    software: str = "slapsoft"

    def options(self) -> str:
        """The command-line options that choose these names (none for the defaults)."""
        if self == Users():
            return ""
        return f" --user-base-name {self.base_name} --software-user {self.software}"

    def names(self) -> list[str]:
        return [self.software, *(f"{self.base_name}{i}" for i in range(PARTITIONS))]


@dataclass(frozen=True)
class DemoLayout:
    """The demo in directory `root`: `configure local`'s settings there, and its release."""

    root: Path

    def settings(
        self, port: int = DEFAULT_PORT, privileged: bool = False, users: Users | None = None
    ) -> LocalSettings:
        """What `configure local` sets up in `root` (the port matters to a new set-up only)."""
        users = users or Users()
        return LocalSettings(
            config_dir=self.root / "etc",
            instance_root=self.root / "srv",
            software_root=self.root / "soft",
            home=self.root,
            partition_amount=PARTITIONS,
            listen_port=port,
            privileged=privileged,
            user_base_name=users.base_name,
            software_user=users.software,
        )

    @property
    def node_config(self) -> Path:
        return self.settings().node_config

    @property
    def instance_root(self) -> Path:
        return self.settings().instance_root

    @property
    def release(self) -> Path:
        return self.root / "software-release"

    @property
    def software_url(self) -> str:
        return str(self.release / "software.cfg")
