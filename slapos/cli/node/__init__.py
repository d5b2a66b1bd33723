"""`slapos node ...`: the commands an admin (or cron) runs on a node.

One module per area: software.py (building releases), instance.py (deploying partitions,
promises, report, prune, bang), supervisor.py (the node's supervisord), setup.py (format,
register, boot), collect.py (resource accounting).
"""

from __future__ import annotations

import argparse

from slapos.cli._common import NODE_CFG_HELP, SlapOSArgumentParser, add_group, register_module
from slapos.cli.registry import AREA_OF, NODE_AREAS


def areas_for(words: tuple[str, ...]) -> tuple[str, ...]:
    """The areas a command line starting with `words` needs (slapos.cli.registry says which
    area defines each command: `slapos node instance`, run every minute by cron, need not
    import and build format's or supervisor's parsers)."""
    if len(words) >= 2 and words[0] == "node" and words[1] in AREA_OF:
        return (AREA_OF[words[1]],)
    return NODE_AREAS


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    node, node_sub = add_group(sub, "node", help="manage this SlapOS node")
    # bare `slapos node` is `slapos node status`: its --cfg is accepted here too
    node.add_argument("--cfg", dest="group_cfg", help=NODE_CFG_HELP)
    areas = areas_for(getattr(root, "command_words", ()))
    for name in areas:
        register_module(name, node_sub, root)
    if areas != NODE_AREAS:
        return
    # Bare `slapos node` means `slapos node status`, as upstream.
    from slapos.cli.node.supervisor import status_default

    node.set_defaults(**status_default())
