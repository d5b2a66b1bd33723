"""`slapos node ...`: the commands an admin (or cron) runs on a node.

One module per area: software.py (building releases), instance.py (deploying partitions,
promises, report, prune, bang), supervisor.py (the node's supervisord), setup.py (format,
register, boot), collect.py (resource accounting).
"""

from __future__ import annotations

import argparse
import importlib

from slapos.cli._common import NODE_CFG_HELP, SlapOSArgumentParser, add_group

AREAS = (
    "slapos.cli.node.software",
    "slapos.cli.node.instance",
    "slapos.cli.node.supervisor",
    "slapos.cli.node.setup",
    "slapos.cli.node.collect",
    "slapos.cli.node.explain",
)


#: Commands whose area alone is built when they are run: `slapos node instance` (cron,
#: every minute) need not import and build format's or supervisor's parsers. Any other word,
#: or none, builds every area (help listings, error messages with the choices).
AREA_OF = {
    "software": "slapos.cli.node.software",
    "instance": "slapos.cli.node.instance",
    "report": "slapos.cli.node.instance",
    "promise": "slapos.cli.node.instance",
    "prune": "slapos.cli.node.instance",
    "bang": "slapos.cli.node.instance",
    "explain": "slapos.cli.node.explain",
}


def areas_for(words: tuple[str, ...]) -> tuple[str, ...]:
    """The areas a command line starting with `words` needs."""
    if len(words) >= 2 and words[0] == "node" and words[1] in AREA_OF:
        return (AREA_OF[words[1]],)
    return AREAS


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    node, node_sub = add_group(sub, "node", help="manage this SlapOS node")
    # bare `slapos node` is `slapos node status`: its --cfg is accepted here too
    node.add_argument("--cfg", dest="group_cfg", help=NODE_CFG_HELP)
    areas = areas_for(getattr(root, "command_words", ()))
    for name in areas:
        importlib.import_module(name).register(node_sub, root)
    if areas != AREAS:
        return
    # Bare `slapos node` means `slapos node status`, as upstream.
    from slapos.cli.node.supervisor import status_default

    node.set_defaults(**status_default())
