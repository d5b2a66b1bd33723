"""`slapos node software`: install, rebuild or remove the software releases of this node.

node.md §4: for each software release the master lists for this computer,
`<software_root>/<md5 of URL>` is built with zc.buildout (or installed from the binary
cache) and reported `building` then `available` or `error`; destroyed releases are removed
and reported `destroyed`. One release failing never stops the others; the run's exit code
says whether any failed.

The master is behind the small `SoftwareMaster` protocol (`SlapMaster` talks to a real one
with slapos.slap), so the engine can be tested with a fake. One release on disk (prepare,
build, remove) is slapos.grid.release.Software.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from slapos.config import NodeConfig
from slapos.errors import ExitCode, SlapOSError
from slapos.grid import buildout
from slapos.grid.progress import BuildState, NoProgress, Progress
from slapos.grid.release import (
    COMPLETED,
    LOG_DIRECTORY,
    Software,
    SoftwareError,
    local_path,
    remove_tree,
    stop_leftover_processes,
)
from slapos.grid.utils import is_software_hash, software_hash
from slapos.system import Clock, Runner

__all__ = [
    "COMPLETED",
    "LOG_DIRECTORY",
    "SlapMaster",
    "Software",
    "SoftwareEngine",
    "SoftwareError",
    "SoftwareMaster",
    "SoftwareOptions",
    "SoftwareResult",
    "SuppliedRelease",
    "local_path",
    "matches_only",
    "remove_tree",
    "stop_leftover_processes",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# The master, as the engine sees it


@dataclass(frozen=True)
class SuppliedRelease:
    url: str
    #: "available" (install it), "destroyed" (remove it), anything else: leave it alone.
    state: str


class SoftwareMaster(Protocol):
    def software_releases(self) -> list[SuppliedRelease]: ...
    def building(self, url: str) -> None: ...
    def available(self, url: str) -> None: ...
    def destroyed(self, url: str) -> None: ...
    def error(self, url: str, error_log: str) -> None: ...


class SlapMaster:
    """SoftwareMaster over slapos.slap (the SLAP protocol, upstream's calls)."""

    def __init__(self, config: NodeConfig) -> None:
        from slapos.slap.entry import connect

        self._computer = connect(config.master).registerComputer(config.computer_id)
        self._releases: dict[str, Any] = {}

    def software_releases(self) -> list[SuppliedRelease]:
        result = []
        for release in self._computer.getSoftwareReleaseList():
            url = getattr(release, "_software_release", None)
            if not url:  # getURI() would raise: a master bug must not stop the node
                log.warning("the master lists a software release without URL: ignored")
                continue
            self._releases[url] = release
            result.append(SuppliedRelease(url, release.getState()))
        return result

    def building(self, url: str) -> None:
        from slapos.slap import NotFoundError

        with contextlib.suppress(NotFoundError):  # old masters do not know this call
            self._releases[url].building()

    def available(self, url: str) -> None:
        self._releases[url].available()

    def destroyed(self, url: str) -> None:
        self._releases[url].destroyed()

    def error(self, url: str, error_log: str) -> None:
        self._releases[url].error(error_log, logger=log)


# --------------------------------------------------------------------------------------
# Options and result


@dataclass(frozen=True)
class SoftwareOptions:
    """What the command line asks of one run."""

    #: rebuild releases even when `.completed` exists, and run buildout without -N.
    force: bool = False
    #: only these releases (URLs or MD5s); they are rebuilt even if installed.
    only: tuple[str, ...] = ()
    garbage_collect: bool = False
    buildout_debug: bool = False


@dataclass(frozen=True)
class Failure:
    url: str
    reason: str
    log_path: Path | None = None


@dataclass
class SoftwareResult:
    installed: list[str] = field(default_factory=list)
    from_cache: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return ExitCode.FAILURE if self.failed else ExitCode.OK

    def summary(self) -> str:
        """`software releases: 1 built, 4 up to date, 1 failed` (nothing: `none to process`)."""
        counts = [
            (len(self.installed), "built"),
            (len(self.from_cache), "from the binary cache"),
            (len(self.up_to_date), "up to date"),
            (len(self.destroyed), "destroyed"),
            (len(self.failed), "failed"),
        ]
        parts = [f"{n} {what}" for n, what in counts if n]
        return "software releases: " + (", ".join(parts) if parts else "none to process")


@dataclass(frozen=True)
class SoftwareDecision:
    """What a run does with one supplied release, and why (shared by --dry-run)."""

    url: str
    action: str  # install | up-to-date | remove | report-destroyed | ignore
    reason: str
    path: str

    @property
    def changes_something(self) -> bool:
        return self.action in ("install", "remove")

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "action": self.action,
            "reason": self.reason,
            "path": self.path,
            "changes_something": self.changes_something,
        }


def decide(release: SuppliedRelease, path: Path, options: SoftwareOptions) -> SoftwareDecision:
    """The decision for one release (its directory at `path`); reads, never writes."""
    url = release.url
    if release.state == "available":
        if (path / COMPLETED).exists() and not (options.force or options.only):
            return SoftwareDecision(url, "up-to-date", "installed", str(path))
        if options.force:
            why = "--force: rebuilt although installed"
        elif options.only and (path / COMPLETED).exists():
            why = "--only-sr: rebuilt although installed"
        elif path.exists():
            why = "a previous build did not complete (no .completed)"
        else:
            why = "supplied, not installed yet"
        return SoftwareDecision(url, "install", why, str(path))
    if release.state == "destroyed":
        if path.exists():
            return SoftwareDecision(url, "remove", "supplied as destroyed", str(path))
        return SoftwareDecision(url, "report-destroyed", "already removed", str(path))
    return SoftwareDecision(url, "ignore", f"state {release.state}", str(path))


def warn_unmatched_only(urls: Sequence[str], only: Sequence[str]) -> None:
    """Say which `--only-sr` items match no supplied release (a typo did nothing, silently)."""
    for item in only:
        if not any(matches_only(url, [item]) for url in urls):
            log.warning("--only-sr %s: no release supplied to this node matches it", item)


def matches_only(url: str, only: Sequence[str]) -> bool:
    """`--only-sr` filter: an item matches by URL or by MD5 (upstream's rule)."""
    digest = software_hash(url)
    return any(item == digest or software_hash(item) == digest for item in only)


# --------------------------------------------------------------------------------------
# The engine


@dataclass
class SoftwareEngine:
    """One `node software` run over every release supplied to this computer."""

    config: NodeConfig
    master: SoftwareMaster
    runner: Runner
    clock: Clock
    environ: Mapping[str, str]
    progress: Progress | None = None
    python: str = sys.executable
    euid: int = field(default_factory=os.geteuid)

    def check_environment(self) -> None:
        root = self.config.software_root
        if not root.is_dir():
            raise SlapOSError(
                f"software_root {root} does not exist or is not a directory "
                "(create it, or fix [slapos] software_root)"
            )
        self._write_supervisord_config()

    def _write_supervisord_config(self) -> None:
        """Upstream writes the node's supervisord configuration here too (not launched).

        Unlike upstream, a missing instance_root does not stop software builds.
        """
        from slapos.grid import supervisor

        config = self.config
        try:
            command = supervisor.watchdog_command(
                config.master,
                config.computer_id,
                config.instance_root,
                config.certificate_repository_path,
            )
            supervisor.write_supervisord_config(config.instance_root, command)
        except (SlapOSError, OSError) as exc:
            log.warning("supervisord configuration not written: %s", exc)

    def process(self, options: SoftwareOptions) -> SoftwareResult:
        self.check_environment()
        progress = self.progress or NoProgress(self.clock)
        result = SoftwareResult()
        wanted: set[Path] = set()
        log.info("Processing software releases...")
        releases = self.master.software_releases()
        warn_unmatched_only([release.url for release in releases], options.only)
        try:
            for release in releases:
                if release.state == "available":
                    # wanted even when filtered out: --garbage-collect --only-sr X must not
                    # remove the other installed releases (upstream does)
                    wanted.add(self.config.software_root / software_hash(release.url))
                if options.only and not matches_only(release.url, options.only):
                    continue
                path = self.config.software_root / software_hash(release.url)
                decision = decide(release, path, options)
                if decision.action == "up-to-date":
                    log.debug("%s is already installed", release.url)
                    result.up_to_date.append(release.url)
                elif decision.action == "install":
                    self._install(release.url, options, progress, result)
                elif decision.action in ("remove", "report-destroyed"):
                    self._destroy(release.url, progress, result)
                else:
                    log.debug("ignoring %s in state %s", release.url, release.state)
            if options.garbage_collect:
                self.garbage_collect(wanted)
        finally:
            progress.close()
        log.info("Finished software releases.")
        log.info("%s", result.summary())
        for failure in result.failed:
            where = f" (full log: {failure.log_path})" if failure.log_path else ""
            log.error("software release %s failed: %s%s", failure.url, failure.reason, where)
        return result

    def _software(self, url: str, options: SoftwareOptions, force: bool) -> Software:
        return Software(
            url,
            self.config,
            self.runner,
            self.environ,
            force=force,
            debug=options.buildout_debug,
            python=self.python,
            euid=self.euid,
        )

    def _install(
        self, url: str, options: SoftwareOptions, progress: Progress, result: SoftwareResult
    ) -> None:
        force = options.force or bool(options.only)
        software = self._software(url, options, force)
        log.info("Installing software release %s ...", url)
        state = progress.start(url)
        software.on_line = lambda text: progress.line(state, text)
        software.on_phase = lambda mode, activity: progress.update(
            state, mode=mode, activity=activity
        )
        try:
            self.master.building(url)
            cached = software.install()
            self.master.available(url)
            (software.path / COMPLETED).write_text(time.asctime())
        except KeyboardInterrupt:
            progress.finish(state, False, "interrupted")
            self._report_error(url, traceback.format_exc())
            raise
        except buildout.BuildoutFailed as exc:
            self._fail(url, exc.reason, exc.report(), result, progress, state, exc.log_path)
        except SlapOSError as exc:
            self._fail(url, str(exc), str(exc), result, progress, state, None)
        except OSError as exc:
            reason = f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
            self._fail(url, reason, traceback.format_exc(), result, progress, state, None)
        except Exception as exc:  # a bug must not stop the other releases; it is reported
            log.exception("unexpected error while installing %s", url)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self._fail(url, reason, traceback.format_exc(), result, progress, state, None)
        else:
            if cached:
                result.from_cache.append(url)
                progress.finish(state, True, "installed from the binary cache")
            else:
                result.installed.append(url)
                progress.finish(state, True, "built")
            log.info("Software release %s is available", url)

    def _fail(
        self,
        url: str,
        reason: str,
        report: str,
        result: SoftwareResult,
        progress: Progress,
        state: BuildState,
        log_path: Path | None,
    ) -> None:
        result.failed.append(Failure(url, reason, log_path))
        progress.finish(state, False, f"failed: {reason}")
        self._report_error(url, report)

    def _report_error(self, url: str, report: str) -> None:
        try:
            self.master.error(url, report)
        except SlapOSError as exc:
            log.warning("cannot report the failure of %s to the master: %s", url, exc)

    def _destroy(self, url: str, progress: Progress, result: SoftwareResult) -> None:
        software = self._software(url, SoftwareOptions(), False)
        try:
            if software.path.exists():
                log.info("Destroying %s ...", url)
                state = progress.start(url, "destroy")
                software.destroy()
                progress.finish(state, True, "removed")
            self.master.destroyed(url)
            result.destroyed.append(url)
        except (SlapOSError, OSError) as exc:
            reason = str(exc)
            result.failed.append(Failure(url, f"cannot destroy: {reason}"))
            self._report_error(url, traceback.format_exc())

    def plan(self, options: SoftwareOptions) -> tuple[list[SoftwareDecision], list[Path]]:
        """What `process(options)` would do, release by release, and the directories its
        garbage collection would remove; reads the master and the disk, writes nothing."""
        decisions, wanted = [], set()
        releases = self.master.software_releases()
        warn_unmatched_only([release.url for release in releases], options.only)
        for release in releases:
            path = self.config.software_root / software_hash(release.url)
            if release.state == "available":
                wanted.add(path)
            if options.only and not matches_only(release.url, options.only):
                continue
            decisions.append(decide(release, path, options))
        garbage = self.garbage(wanted) if options.garbage_collect else []
        return decisions, garbage

    def garbage(self, wanted: set[Path]) -> list[Path]:
        """Release directories (with a buildout.cfg) that nobody supplies any more."""
        return [
            profile.parent
            for profile in sorted(self.config.software_root.glob("*/buildout.cfg"))
            if is_software_hash(profile.parent.name) and profile.parent not in wanted
        ]

    def garbage_collect(self, wanted: set[Path]) -> list[Path]:
        """Remove release directories (with a buildout.cfg) that nobody supplies any more."""
        removed = []
        for path in self.garbage(wanted):
            log.info("Destroying garbage collected software folder %s ...", path)
            try:
                remove_tree(path)
            except OSError as exc:
                log.error("cannot remove %s: %s", path, exc)
            else:
                removed.append(path)
        return removed
