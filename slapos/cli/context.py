"""The world a command runs in: its streams, environment, runner and clock (`Context`).

Import-light like slapos.cli._common: standard library and slapos.errors only at import
time; the real runner, clock and configuration loaders are imported where they are used.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Mapping, Sequence

from slapos.errors import NotRootError

TYPE_CHECKING = False  # typing is not imported at run time (`slapos COMMAND --help`)

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TextIO

    from slapos.config import ClientConfig, NodeConfig
    from slapos.system import Clock, Completed, Runner


class Context:
    """The world a command runs in. Production values are built once, here."""

    def __init__(
        self,
        *,
        stdout: TextIO,
        stderr: TextIO,
        stdin: TextIO,
        environ: Mapping[str, str],
        euid: int,
        runner: Runner,
        clock: Clock,
        cwd: Path | None = None,
    ) -> None:
        from pathlib import Path

        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.environ = environ
        self.euid = euid
        self.runner = runner
        self.clock = clock
        self.cwd = Path.cwd() if cwd is None else cwd
        #: how the process was started (sys.argv[0]); None in-process (tests)
        self.argv0: str | None = None

    @classmethod
    def from_process(cls) -> Context:
        from slapos.system import SubprocessRunner, SystemClock

        ctx = cls(
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdin=sys.stdin,
            environ=os.environ,
            euid=os.geteuid(),
            runner=SubprocessRunner(),
            clock=SystemClock(),
        )
        ctx.argv0 = sys.argv[0]
        return ctx

    @classmethod
    def for_test(
        cls,
        tmp_path: Path,
        *,
        environ: Mapping[str, str] | None = None,
        euid: int | None = None,
        runner: Runner | None = None,
        clock: Clock | None = None,
        stdin: str = "",
    ) -> CapturedContext:
        """A context for tests: output captured in StringIO, no program run unless a
        `runner` is given."""
        from slapos.system import SystemClock

        env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(environ or {})
        return CapturedContext(
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            stdin=io.StringIO(stdin),
            environ=env,
            euid=os.geteuid() if euid is None else euid,
            runner=runner or _NoRunner(),
            clock=clock or SystemClock(),
            cwd=tmp_path,
        )

    def slapos_command(self) -> str:
        """`slapos` as printed hints should name it: `slapos` when that name on PATH runs
        this same script, else the script's absolute path (a virtualenv not activated)."""
        argv0 = self.argv0
        if not argv0 or os.path.basename(argv0) != "slapos" or not os.path.isfile(argv0):
            return "slapos"  # `python -m slapos`, or in-process
        import shlex
        import shutil

        script = os.path.abspath(os.path.join(self.cwd, argv0))
        found = shutil.which("slapos", path=self.environ.get("PATH", ""))
        if found and os.path.samefile(found, script):
            return "slapos"
        return shlex.quote(script)

    @property
    def is_root(self) -> bool:
        return self.euid == 0

    # ---- configuration --------------------------------------------------------------
    def expand(self, path: str) -> Path:
        """Expand `~` against this context's HOME."""
        from pathlib import Path

        if path.startswith("~"):
            home = self.environ.get("HOME") or os.path.expanduser("~")
            path = home + path[1:]
        return Path(path)

    def node_config_path(self, cfg: str | None) -> Path:
        from pathlib import Path

        from slapos.config import NODE_CONFIG_DEFAULT, NODE_CONFIG_ENV

        if cfg is not None:
            return self.expand(cfg)
        if NODE_CONFIG_ENV in self.environ:
            return self.expand(self.environ[NODE_CONFIG_ENV])
        return Path(NODE_CONFIG_DEFAULT)

    def client_config_path(self, cfg: str | None) -> Path:
        from slapos.config import CLIENT_CONFIG_DEFAULT, CLIENT_CONFIG_ENV, CLIENT_CONFIG_LEGACY

        if cfg is not None:
            return self.expand(cfg)
        if CLIENT_CONFIG_ENV in self.environ:
            return self.expand(self.environ[CLIENT_CONFIG_ENV])
        path = self.expand(CLIENT_CONFIG_DEFAULT)
        legacy = self.expand(CLIENT_CONFIG_LEGACY)
        if not path.exists() and legacy.exists():
            return legacy
        return path

    def node_config(
        self, args: argparse.Namespace, overrides: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> NodeConfig:
        """Load slapos.cfg for a node command, with command-line overrides."""
        import logging

        from slapos.config import load_node_config

        path = self.node_config_path(getattr(args, "cfg", None))
        logging.getLogger("slapos.cli").debug("Loading config: %s", path)
        return load_node_config(path, overrides, **kwargs)

    def client_config(
        self, args: argparse.Namespace, master_url: str | None = None
    ) -> ClientConfig:
        """Load slapos-client.cfg for a client command."""
        import logging

        from slapos.config import load_client_config

        path = self.client_config_path(getattr(args, "cfg", None))
        logging.getLogger("slapos.cli").debug("Loading config: %s", path)
        return load_client_config(path, master_url=master_url)

    def require_root(self, root_check: bool = True) -> None:
        """Refuse to go on unless root (exit 5), when `root_check` says to check."""
        if root_check and not self.is_root:
            raise NotRootError(
                "this slapos command must be run as root "
                "(or set root_check = false in [slapos] of the configuration)"
            )


class CapturedContext(Context):
    """What `Context.for_test` makes: its output streams are StringIO, to be read back."""

    stdout: io.StringIO
    stderr: io.StringIO


class _NoRunner:
    """The runner of a `Context.for_test` given none: a test runs no program by accident."""

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:
        raise AssertionError(
            f"Context.for_test was given no runner, refusing to run {list(argv)}: pass "
            "runner=FakeRunner(...) (tests/fakes), or runner=SubprocessRunner() in an "
            "integration test that runs real programs"
        )
