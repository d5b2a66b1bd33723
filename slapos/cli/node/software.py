"""`slapos node software`: build (or remove) the software releases supplied to this node."""

from __future__ import annotations

import argparse

from slapos.cli._common import SlapOSArgumentParser, add_command, not_implemented
from slapos.cli.node._grid_options import add_slapgrid_options


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub, root, ("node", "software"), group="node", help="run software installation/deletion"
    )
    add_slapgrid_options(p, "software")
    p.add_argument(
        "--buildout-debug",
        action="store_true",
        help="Run buildout in debug mode (with -D command line switch)",
    )
    p.add_argument(
        "--garbage-collect",
        action="store_true",
        help="Destroy software folders that are not supplied on this computer, but still "
        "present on disk.",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="Process anyway, even if already installed. Existing extends cache will be used "
        "only when download fails.",
    )
    only = p.add_mutually_exclusive_group()
    only.add_argument(
        "--all", action="store_true", help="Deprecated. Use --force without --only-sr instead."
    )
    only.add_argument(
        "--only-sr",
        "--only",
        dest="only_sr",
        help="Force the update of a single software release (can be full URL or MD5 hash), "
        "even if is already installed. This option will make all other sofware releases be "
        "ignored.",
    )
    p.set_defaults(handler=not_implemented("node software"))
