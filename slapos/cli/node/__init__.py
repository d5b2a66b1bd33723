"""`slapos node ...`: the commands an admin (or cron) runs on a node.

One module per area: software.py (building releases), instance.py (deploying partitions,
promises, report, prune, bang), supervisor.py (the node's supervisord), setup.py (format,
register, boot), collect.py (resource accounting).
"""

from __future__ import annotations

import argparse
import importlib

from slapos.cli._common import SlapOSArgumentParser, add_group

AREAS = (
    "slapos.cli.node.software",
    "slapos.cli.node.instance",
    "slapos.cli.node.supervisor",
    "slapos.cli.node.setup",
    "slapos.cli.node.collect",
)


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    node, node_sub = add_group(sub, "node", help="manage this SlapOS node")
    for name in AREAS:
        importlib.import_module(name).register(node_sub, root)
    # Bare `slapos node` means `slapos node status`, as upstream.
    from slapos.cli.node.supervisor import status_default

    node.set_defaults(**status_default())
