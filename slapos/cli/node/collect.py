"""`slapos node collect`: snapshot what each partition consumes, for usage reports."""

from __future__ import annotations

import argparse

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers
from slapos.cli.context import Context


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    Commands(sub, root, group="node", cfg="node").add(
        ("node", "collect"), run_collect, "Collect system consumption and data and store."
    )


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
