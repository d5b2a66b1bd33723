"""`slapos node instance|report|promise|prune|bang`: deploy partitions, check promises,
report usage and destroy partitions, prune shared parts, ask for reprocessing.
"""

from __future__ import annotations

import argparse

from slapos.cli._common import SlapOSArgumentParser, add_command, add_node_cfg, not_implemented
from slapos.cli.node._grid_options import add_slapgrid_options


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(sub, root, ("node", "instance"), group="node", help="run instance deployment")
    add_slapgrid_options(p, "instance")
    p.add_argument(
        "--buildout-debug",
        action="store_true",
        help="Run buildout in debug mode (with -D command line switch)",
    )
    p.add_argument(
        "--force-stop",
        action="store_true",
        help="Stop the services even for instances requested as started",
    )
    p.add_argument(
        "--force", action="store_true", help="Process Computer Partitions even if already processed."
    )
    only = p.add_mutually_exclusive_group()
    only.add_argument(
        "--all", action="store_true", help="Deprecated. Use --force without --only-cp instead."
    )
    only.add_argument(
        "--only-cp",
        "--only",
        dest="only_cp",
        help="Update a single or a list of computer partitions (ie.:slappartX, slappartY), this "
        "option will make all other computer partitions be ignored.",
    )
    p.set_defaults(handler=not_implemented("node instance"))

    p = add_command(
        sub, root, ("node", "report"), group="node", help="run instance reports and garbage collection"
    )
    add_slapgrid_options(p, "report")
    p.set_defaults(handler=not_implemented("node report"))

    p = add_command(
        sub,
        root,
        ("node", "promise"),
        group="node",
        help="run only promises to test the partition state",
    )
    add_slapgrid_options(p, "instance")
    p.add_argument(
        "--only-cp",
        "--only",
        dest="only_cp",
        help="Run promise for a single or a list of computer partitions (ie.:slappartX, "
        "slappartY), this option will make all other computer partitions be ignored.",
    )
    p.set_defaults(handler=not_implemented("node promise"))

    p = add_command(
        sub,
        root,
        ("node", "prune"),
        group="node",
        help="Clean up unused shared slapos.recipe.cmmi parts.",
    )
    add_node_cfg(p)
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
    p.set_defaults(handler=not_implemented("node prune"))

    p = add_command(sub, root, ("node", "bang"), group="node", help="request update on all partitions")
    add_node_cfg(p)
    p.add_argument("-m", "--message", help="Message for bang")
    p.set_defaults(handler=not_implemented("node bang"))
