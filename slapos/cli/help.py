"""`slapos help [COMMAND...]`: the help of a command, or the commands of a group, read from
the one argparse tree (slapos.cli.registry builds all of it for this command)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from slapos.cli._common import SlapOSArgumentParser, SubParsers, add_command

if TYPE_CHECKING:
    from slapos.cli.context import Context


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = add_command(
        sub, root, ("help",), group="other", help="print detailed help for another command"
    )
    p.add_argument("cmd", nargs="*", help="name of the command")
    p.set_defaults(handler=run_help, root_parser=root)


def run_help(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.errors import UnknownCommandError

    root: SlapOSArgumentParser = args.root_parser
    words = tuple(args.cmd)
    if not words:
        ctx.stdout.write(root.format_help())
        return 0
    for info in root.commands:
        if info.words == words:
            ctx.stdout.write(info.parser.format_help())
            return 0
    # A group name (`slapos help node`): list that group's commands.
    members = [c for c in root.commands if c.words[: len(words)] == words and not c.hidden]
    if members:
        width = max(len(c.name) for c in members)
        ctx.stdout.write(f"usage: slapos {' '.join(words)} COMMAND [options]\n\ncommands:\n")
        for c in sorted(members, key=lambda c: c.name):
            ctx.stdout.write(f"  {c.name.ljust(width)}  {c.help}\n")
        return 0
    from slapos.cli._common import close_match

    close = close_match(" ".join(words), [c.name for c in root.commands if not c.hidden])
    hint = f"did you mean 'slapos help {close}'? " if close else ""
    raise UnknownCommandError(
        f"the command '{' '.join(words)}' does not exist ({hint}see 'slapos --help')"
    )
