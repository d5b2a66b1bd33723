"""`slapos node instance|report|promise|prune|bang`: deploy partitions, check promises,
report usage and destroy partitions, prune shared parts, ask for reprocessing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers, add_message_option
from slapos.cli.context import Context
from slapos.cli.node._grid_options import (
    PIDFILE_DEFAULTS,
    add_slapgrid_options,
    random_delay,
    slapgrid_overrides,
)
from slapos.cli.node.dry_run import add_dry_run_options

if TYPE_CHECKING:
    from slapos.config import NodeConfig
    from slapos.grid.instance_io import Node


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    node = Commands(sub, root, group="node", cfg="node")
    p = node.add(("node", "instance"), run_instance, "run instance deployment")
    add_slapgrid_options(p, "instance", buildout_debug=True)
    p.add_argument(
        "--force-stop",
        action="store_true",
        help="Stop the services even for instances requested as started",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="Process Computer Partitions even if already processed.",
    )
    only = p.add_mutually_exclusive_group()
    only.add_argument(
        "--all", action="store_true", help="Deprecated. Use --force without --only-cp instead."
    )
    _add_only_cp(only, "Update")
    add_dry_run_options(p)

    p = node.add(("node", "report"), run_report, "run instance reports and garbage collection")
    add_slapgrid_options(p, "report")
    add_dry_run_options(p)

    p = node.add(("node", "promise"), run_promise, "run only promises to test the partition state")
    add_slapgrid_options(p, "instance")
    _add_only_cp(p, "Run promise for")

    p = node.add(("node", "prune"), run_prune, "Clean up unused shared slapos.recipe.cmmi parts.")
    p.add_argument("--dry-run", action="store_true", help="Don't delete, just log")
    p.add_argument(
        "--additional-software-directory",
        action="append",
        default=[],
        metavar="ADDITIONAL_SOFTWARE_DIRECTORY",
        help="Additional software directory containing .installed.cfg to consider. Shared "
        "parts used by software in these directories will not be pruned. Can be specified "
        "multiple times.",
    )

    p = node.add(("node", "bang"), run_bang, "request update on all partitions")
    add_message_option(p)


def _add_only_cp(parser: Any, verb: str) -> None:
    parser.add_argument(
        "--only-cp",
        "--only",
        dest="only_cp",
        help=f"{verb} a single or a list of computer partitions (ie.:slappartX, slappartY), "
        "this option will make all other computer partitions be ignored.",
    )


# ---- handlers -------------------------------------------------------------------------


def _node(args: argparse.Namespace, ctx: Context) -> Node:
    from slapos.grid.instance_io import Node

    config = ctx.node_config(args, slapgrid_overrides(args))
    ctx.require_root(config.root_check)
    return Node(config, ctx.runner, ctx.clock, ctx.environ, ctx.is_root)


def _pidfile(args: argparse.Namespace, config: NodeConfig, kind: str, default_kind: str) -> Path:
    return Path(config.pidfile_for(kind, args.pidfile, PIDFILE_DEFAULTS[default_kind]))


def _only(value: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


def run_instance(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.grid.instance import InstanceEngine
    from slapos.grid.instance_io import InstanceOptions
    from slapos.system import PidFile

    options = InstanceOptions(
        force=bool(args.force or args.all),
        force_stop=bool(args.force_stop),
        only_cp=_only(args.only_cp),
        buildout_debug=bool(args.buildout_debug),
    )
    if args.dry_run:
        from slapos.cli.node.dry_run import run_instance_dry_run

        return run_instance_dry_run(args, ctx, options)
    node = _node(args, ctx)
    with PidFile(_pidfile(args, node.config, "instance", "instance")):
        random_delay(args, node.config, ctx)
        return InstanceEngine(node, options).run().exit_code


def run_promise(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.grid.instance import InstanceEngine
    from slapos.grid.instance_io import InstanceOptions
    from slapos.system import PidFile

    node = _node(args, ctx)
    options = InstanceOptions(force=True, only_cp=_only(args.only_cp))
    with PidFile(_pidfile(args, node.config, "instance", "instance")):
        result = InstanceEngine(node, options).run_promises_only()
        return 2 if result.promise_failed else 0


def run_report(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.collect.usage import report_usage
    from slapos.grid.report import ReportEngine
    from slapos.system import PidFile

    if args.dry_run:
        from slapos.cli.node.dry_run import run_report_dry_run

        return run_report_dry_run(args, ctx)

    node = _node(args, ctx)
    with PidFile(_pidfile(args, node.config, "report", "report")):
        random_delay(args, node.config, ctx)
        result = ReportEngine(
            node, send_usage=report_usage
        ).run()  # logs "<partition>: destroyed", once each
    return result.exit_code


def run_prune(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.grid.prune import prune

    config = ctx.node_config(args)
    ctx.require_root(config.root_check)
    removed = prune(
        config,
        dry_run=bool(args.dry_run),
        additional=[Path(d) for d in args.additional_software_directory],
    )
    for path in removed:
        ctx.stdout.write(f"{'would remove' if args.dry_run else 'removed'} {path}\n")
    return 0


def run_bang(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap.entry import connect

    config = ctx.node_config(args)
    ctx.require_root(config.root_check)
    message = args.message or ""
    connection = connect(config.master)
    ctx.stderr.write(f"Banging to {config.master_url!r}\n")
    connection.registerComputer(config.computer_id).bang(message)
    ctx.stderr.write(f"Bang with message {message!r}\n")
    return 0
