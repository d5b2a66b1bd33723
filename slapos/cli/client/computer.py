"""`slapos computer list|info|token`: the nodes of this account, and a token to add one."""

from __future__ import annotations

import argparse

from slapos.cli._common import (
    Commands,
    SlapOSArgumentParser,
    SubParsers,
    add_format_option,
    add_group,
)
from slapos.cli.client import connect, emit_json
from slapos.cli.context import Context
from slapos.errors import ExitCode


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    _, parsers = add_group(sub, "computer", help="manage your computers (nodes)")
    computer = Commands(parsers, root, group="client", cfg="client")
    p = computer.add(("computer", "list"), run_computer_list, "List all available compute nodes")
    add_format_option(p)
    p = computer.add(("computer", "info"), run_computer_info, "get information of an computer")
    p.add_argument("reference", help="Your computer reference")
    add_format_option(p)
    p = computer.add(("computer", "token"), run_computer_token, "get token for setup a computer")
    add_format_option(p)


def run_computer_list(args: argparse.Namespace, ctx: Context) -> int:
    connection = connect(ctx.client_config(args))
    computers = connection.getComputerDict()
    rows = [
        {"reference": getattr(c, "_reference", title), "title": getattr(c, "_title", title)}
        for title, c in sorted(computers.items())
    ]
    if args.format == "json":
        emit_json(ctx, rows)
    elif not rows:
        ctx.stdout.write("No existing computer.\n")
    else:
        ctx.stdout.write("List of Computers:\n")
        for row in rows:
            ctx.stdout.write(f"{row['reference']} {row['title']}\n")
    return ExitCode.OK


def run_computer_info(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError, ResourceNotReady

    connection = connect(ctx.client_config(args))
    try:
        computer = connection.registerComputer(args.reference).getInformation()
    except ResourceNotReady:
        ctx.stdout.write("Computer does not exist or is not ready yet.\n")
        return ExitCode.USAGE
    except NotFoundError:
        ctx.stdout.write(f"Computer {args.reference} does not exist.\n")
        return ExitCode.USAGE
    reference = getattr(computer, "_reference", args.reference)
    title = getattr(computer, "_title", "")
    if args.format == "json":
        emit_json(ctx, {"reference": reference, "title": title})
    else:
        ctx.stdout.write(f"Computer Reference: {reference}\nComputer Title    : {title}\n")
    return ExitCode.OK


def run_computer_token(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError, ResourceNotReady

    connection = connect(ctx.client_config(args))
    try:
        token = connection.registerToken().request()
    except ResourceNotReady:
        ctx.stdout.write("Computer does not exist or is not ready yet.\n")
        return ExitCode.USAGE
    except NotFoundError as exc:  # upstream crashes in this branch
        ctx.stdout.write(f"Cannot get a computer token: {exc}\n")
        return ExitCode.USAGE
    if args.format == "json":
        emit_json(ctx, {"token": token})
    else:
        ctx.stdout.write(f"Computer token: {token}\n")
    return ExitCode.OK
