"""Entry point of the `slapos` command: builds the parser tree, runs one handler.

Errors become exit codes here and only here (see slapos.errors and docs/exit-codes.rst).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from slapos.cli._common import (
    Handler,
    ParserExit,
    SlapOSArgumentParser,
    add_global_options,
    register_module,
)
from slapos.cli.context import Context
from slapos.cli.entry import version_line
from slapos.cli.registry import FAMILIES, FIRST_WORDS
from slapos.errors import ExitCode, SlapOSError, UnknownCommandError
from slapos.version import __version__

TYPE_CHECKING = False  # typing is not imported at run time (`slapos COMMAND --help`)

if TYPE_CHECKING:
    import logging


_GLOBAL_WITH_VALUE = ("--log-file", "--logfile", "--log_file")

#: Group names in the grouped listing, in display order.
GROUPS = ("client", "node", "cachelookup", "other")


class RootParser(SlapOSArgumentParser):
    """The root parser: its help is the grouped command list."""

    #: The command words of the argv the tree is built for; () means build everything.
    command_words: tuple[str, ...] = ()

    def format_help(self) -> str:
        text = super().format_help()
        width = 13
        blocks = []
        for group in GROUPS:
            infos = sorted(
                (c for c in self.commands if c.group == group and not c.hidden),
                key=lambda c: c.name,
            )
            if not infos:
                continue
            lines = [f"\n{group} commands:"]
            for info in infos:
                lines.append(f"  {info.name.ljust(width)}  {info.help}")
            blocks.append("\n".join(lines))
        return text + "\n".join(blocks) + "\n"


def command_words(argv: Sequence[str] | None, count: int = 2) -> tuple[str, ...]:
    """The first `count` words of `argv` that are neither options nor global option values."""
    words: list[str] = []
    skip = False
    for token in argv or ():
        if skip:
            skip = False
        elif token in _GLOBAL_WITH_VALUE:
            skip = True
        elif not token.startswith("-"):
            words.append(token)
            if len(words) == count:
                break
    return tuple(words)


def families_for(argv: Sequence[str] | None) -> tuple[str, ...]:
    """The families whose parsers `argv` needs (all of them unless the first word says)."""
    if argv is None:
        return FAMILIES
    words = command_words(argv, 1)
    family = FIRST_WORDS.get(words[0]) if words else None
    return (family,) if family else FAMILIES


def build_parser(argv: Sequence[str] | None = None) -> RootParser:
    """The parser tree; with `argv`, only the part of the tree that argv can reach."""
    root = RootParser(
        prog="slapos",
        description=f"SlapOS client {__version__}",
        usage="slapos [global options] COMMAND [options] [arguments]",
        add_help=True,
    )
    root.commands = []
    root.add_argument(
        "--version",
        action="version",
        version=version_line(),
        help="show program's version number and exit",
    )
    add_global_options(root, root=True)
    sub = root.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=SlapOSArgumentParser,
        help=argparse.SUPPRESS,  # the grouped listing below replaces argparse's
    )
    # Families may build only the commands these words lead to (see cli/node/__init__.py).
    root.command_words = command_words(argv) if argv is not None else ()
    for name in families_for(argv):
        register_module(name, sub, root)
    return root


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    """Run `slapos` with `argv` (without the program name); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    old_out, old_err = sys.stdout, sys.stderr
    # argparse prints help and usage errors to sys.stdout/sys.stderr: route them to ctx.
    # (The process Context is only built once parsing succeeded: `--help` needs none.)
    if ctx is not None:
        sys.stdout, sys.stderr = ctx.stdout, ctx.stderr
    try:
        try:
            args, extras = parser.parse_known_args(argv)
            if extras:
                leaf: SlapOSArgumentParser = getattr(args, "command_parser", parser)
                leaf.unrecognized(extras)
        except ParserExit as exc:
            return exc.status
        except SlapOSError as exc:
            ctx = ctx or Context.from_process()
            _setup_logging(None, ctx)
            _log().critical("%s", exc)
            return exc.exit_code
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    ctx = ctx or Context.from_process()
    _setup_logging(args, ctx)
    if getattr(args, "group_cfg", None) and getattr(args, "cfg", None) is None:
        args.cfg = args.group_cfg  # `slapos node --cfg X [COMMAND]`
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:  # no command at all: the grouped listing
        ctx.stdout.write(parser.format_help())
        return ExitCode.OK
    return run_handler(handler, args, ctx)


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("slapos.cli")


def run_handler(handler: Handler, args: argparse.Namespace, ctx: Context) -> int:
    debug = bool(getattr(args, "debug", False))
    log = _log()
    try:
        return int(handler(args, ctx) or 0)
    except UnknownCommandError as exc:  # `slapos help nope`: as `slapos nope`, as upstream
        log.critical("%s", exc, exc_info=debug)
        return exc.exit_code
    except SlapOSError as exc:
        log.error("%s", exc, exc_info=debug)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:
        log.critical(
            "internal error: %s: %s (run again with --debug for the traceback, and please "
            "report it)",
            type(exc).__name__,
            exc,
            exc_info=True,
        )
        return ExitCode.BUG


def _setup_logging(args: argparse.Namespace | None, ctx: Context) -> None:
    from slapos.cli.logsetup import setup_logging

    verbose = getattr(args, "verbose", 0) or 0
    quiet = getattr(args, "quiet", False)
    setup_logging(
        0 if quiet else 1 + verbose,
        stream=ctx.stderr,
        log_file=getattr(args, "log_file", None),
        tracebacks=bool(getattr(args, "debug", False)),
        timestamps=getattr(args, "log_time", True),
        colour=getattr(args, "log_color", None),
    )


def console_main() -> int:
    """The `slapos` console script (see slapos.cli.entry for the fast path)."""
    return main()
