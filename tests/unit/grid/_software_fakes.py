"""Fakes for the software engine's unit tests: a scripted Runner, a clock, a master."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slapos.grid.software import SuppliedRelease
from slapos.system import Completed, Credentials

#: (argv, cwd) -> (returncode, output lines); may touch the file system like buildout would.
Script = Callable[[tuple[str, ...], Path], tuple[int, list[str]]]


@dataclass
class Call:
    argv: tuple[str, ...]
    cwd: Path | None
    env: Mapping[str, str] | None
    user: Credentials | None
    umask: int | None
    timeout: float | None


def fake_buildout(argv: tuple[str, ...], cwd: Path) -> tuple[int, list[str]]:
    """Acts as zc.buildout: bootstrap makes bin/buildout, a run installs one part."""
    if argv[-1] == "bootstrap" or ("-c" in argv and "bootstrap" in argv[-1]):
        (cwd / "bin").mkdir(exist_ok=True)
        (cwd / "bin" / "buildout").write_text("#!/usr/bin/python3 -S\nimport zc.buildout\n")
        return 0, [f"Generated script '{cwd}/bin/buildout'."]
    (cwd / "parts").mkdir(exist_ok=True)
    return 0, ["Installing hello.", "Installing world."]


@dataclass
class FakeRunner:
    script: Script = fake_buildout
    calls: list[Call] = field(default_factory=list)

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
        self.calls.append(Call(argv, cwd, env, user, umask, timeout))
        assert cwd is not None
        code, lines = self.script(argv, cwd)
        for line in lines:
            if on_line is not None:
                on_line(line)
        return Completed(argv, code, "".join(line + "\n" for line in lines))


@dataclass
class FakeClock:
    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class FakeMaster:
    releases: list[SuppliedRelease] = field(default_factory=list)
    reports: list[tuple[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def software_releases(self) -> list[SuppliedRelease]:
        return list(self.releases)

    def building(self, url: str) -> None:
        self.reports.append(("building", url))

    def available(self, url: str) -> None:
        self.reports.append(("available", url))

    def destroyed(self, url: str) -> None:
        self.reports.append(("destroyed", url))

    def error(self, url: str, error_log: str) -> None:
        self.reports.append(("error", url))
        self.errors[url] = error_log
