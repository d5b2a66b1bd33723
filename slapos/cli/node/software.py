"""`slapos node software`: build (or remove) the software releases supplied to this node."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers
from slapos.cli.context import Context
from slapos.cli.node._grid_options import (
    PIDFILE_DEFAULTS,
    add_slapgrid_options,
    random_delay,
    slapgrid_overrides,
)
from slapos.cli.node.dry_run import add_dry_run_options

if TYPE_CHECKING:
    from slapos.grid.progress import Progress
    from slapos.system import Clock


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    node = Commands(sub, root, group="node", cfg="node")
    p = node.add(("node", "software"), run_software, "run software installation/deletion")
    add_slapgrid_options(p, "software", buildout_debug=True)
    p.add_argument(
        "--garbage-collect",
        action="store_true",
        help="Destroy software folders that are not supplied on this computer, but still "
        "present on disk.",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="Process anyway, even if already installed. Existing extends cache will be used "
        "only when download fails.",
    )
    only = p.add_mutually_exclusive_group()
    only.add_argument(
        "--all", action="store_true", help="Deprecated. Use --force without --only-sr instead."
    )
    only.add_argument(
        "--only-sr",
        "--only",
        dest="only_sr",
        help="Force the update of a single software release (can be full URL or MD5 hash), "
        "even if is already installed. This option will make all other sofware releases be "
        "ignored.",
    )
    add_dry_run_options(p)


def _progress(args: argparse.Namespace, ctx: Context, clock: Clock) -> Progress:
    """A live status line on a terminal; log lines otherwise (cron); nothing with -q."""
    from slapos.grid.progress import LogProgress, NoProgress, TerminalProgress

    if getattr(args, "quiet", False):
        return NoProgress(clock)
    interactive = (
        ctx.stderr.isatty()
        and ctx.environ.get("TERM", "dumb") != "dumb"
        and getattr(args, "verbose", 0) == 0  # -v prints buildout's lines: no redrawing
        and not getattr(args, "buildout_debug", False)
    )
    if not interactive:
        return LogProgress(clock)
    import shutil

    width = shutil.get_terminal_size((100, 24)).columns
    return TerminalProgress(clock, stream=ctx.stderr, width=width)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM acts as Ctrl-C: the build's process group is killed, the master told."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (in-process tests): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_software(args: argparse.Namespace, ctx: Context) -> int:
    """Install or remove the software releases supplied to this node (node.md §4)."""
    import sys

    from slapos.grid.software import SlapMaster, SoftwareEngine, SoftwareOptions
    from slapos.system import PidFile

    config = ctx.node_config(args, slapgrid_overrides(args))
    only = tuple(x.strip() for x in (args.only_sr or "").split(",") if x.strip())
    options = SoftwareOptions(
        force=bool(args.force or args.all),
        only=only,
        garbage_collect=bool(args.garbage_collect),
        buildout_debug=bool(config.buildout_debug),
    )
    if args.dry_run:
        from slapos.cli.node.dry_run import run_software_dry_run

        return run_software_dry_run(args, ctx, config, options)
    ctx.require_root(config.root_check)
    pidfile = Path(config.pidfile_for("software", args.pidfile, PIDFILE_DEFAULTS["software"]))
    with PidFile(pidfile), _sigterm_interrupts():
        random_delay(args, config, ctx)
        engine = SoftwareEngine(
            config,
            SlapMaster(config),
            ctx.runner,
            ctx.clock,
            ctx.environ,
            progress=_progress(args, ctx, ctx.clock),
            # buildout's bootstrap runs with our interpreter, as the software user
            python=sys.executable,
            euid=ctx.euid,
        )
        with _console_logs_clear(engine.progress):
            return engine.process(options).exit_code


@contextlib.contextmanager
def _console_logs_clear(progress: Progress | None) -> Iterator[None]:
    """Log lines printed during a build first erase the live status line (same terminal)."""
    import logging

    from slapos.grid.progress import TerminalProgress

    if not isinstance(progress, TerminalProgress):
        yield
        return
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and h.stream is progress.stream
    ]
    for handler in handlers:
        handler.addFilter(progress.clear_for_log)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(progress.clear_for_log)
