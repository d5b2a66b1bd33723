"""`slapos node ...`: the commands an admin (or cron) runs on a node.

One module per area: software.py (building releases), instance.py (deploying partitions,
promises, report, prune, bang), supervisor.py (the node's supervisord), setup.py (format,
register, boot), collect.py (resource accounting), explain.py (the last run, explained);
dry_run.py prints the plan of `--dry-run` and _grid_options.py holds the options of
software, instance, report and promise (upstream's slapgrid options).
slapos.cli.registry says which area defines each command: `slapos node instance`, run by
cron every minute, imports and builds its own area only.
"""

from __future__ import annotations

from slapos.cli._common import (
    CFG_HELP,
    SlapOSArgumentParser,
    SubParsers,
    add_group,
    register_module,
)
from slapos.cli.registry import areas_of


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    node, node_sub = add_group(sub, "node", help="manage this SlapOS node")
    # bare `slapos node` is `slapos node status`: its --cfg is accepted here too
    node.add_argument("--cfg", dest="group_cfg", help=CFG_HELP["node"])
    words = getattr(root, "command_words", ())
    areas = areas_of("node", words)
    for name in areas:
        register_module(name, node_sub, root)
    if areas != areas_of("node", ()):
        return
    # Bare `slapos node` means `slapos node status`, as upstream.
    from slapos.cli.node.supervisor import status_default

    node.set_defaults(**status_default())
