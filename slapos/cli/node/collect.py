"""`slapos node collect`: snapshot what each partition consumes, for usage reports."""

from __future__ import annotations

import argparse

from slapos.cli._common import Context, SlapOSArgumentParser, SubParsers, add_command, add_node_cfg


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = add_command(
        sub,
        root,
        ("node", "collect"),
        group="node",
        help="Collect system consumption and data and store.",
    )
    add_node_cfg(p)
    p.set_defaults(handler=run_collect)


def run_collect(args: argparse.Namespace, ctx: Context) -> int:
    """Always needs root, as upstream: it reads every partition user's processes."""
    if not ctx.is_root:
        from slapos.errors import NotRootError

        raise NotRootError(
            "slapos node collect must be run as root: it reads the processes of every "
            "partition user"
        )
    config = ctx.node_config(args, required=("computer_id", "instance_root"))
    from slapos.collect.collector import CollectConfig, collect

    collect(CollectConfig.from_node_config(config), runner=ctx.runner, clock=ctx.clock)
    return 0
