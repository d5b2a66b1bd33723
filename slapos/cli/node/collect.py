"""`slapos node collect`: snapshot what each partition consumes, for usage reports."""

from __future__ import annotations

import argparse

from slapos.cli._common import SlapOSArgumentParser, add_command, add_node_cfg, not_implemented


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub,
        root,
        ("node", "collect"),
        group="node",
        help="Collect system consumption and data and store.",
    )
    add_node_cfg(p)
    p.set_defaults(handler=not_implemented("node collect"))
