"""`slapos supply` and `slapos remove`: (un)install a software release on a node."""

from __future__ import annotations

import argparse

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers
from slapos.cli.client import connect, log, resolve_software
from slapos.cli.context import Context
from slapos.errors import ExitCode, MasterError

TYPE_CHECKING = False  # typing is not imported at run time (`slapos supply --help`)
if TYPE_CHECKING:
    from slapos.slap import slap


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    for name, desc, state in (
        ("supply", "supply a Software to a node", "available"),
        ("remove", "remove a Software from a node", "destroyed"),
    ):
        p = Commands(sub, root, group="client", cfg="client").add((name,), run_supply, desc)
        p.add_argument("software_url", help="Your software url (or an alias, or product.NAME)")
        p.add_argument("node", help="Target node")
        p.set_defaults(software_state=state)


def run_supply(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError

    config = ctx.client_config(args)
    connection = connect(config)
    software = resolve_software(connection, config, args.software_url)
    state = supply_state(connection, software, args.node)
    if state == "no-computer":
        log.warning(
            "the master knows no computer %s: nothing builds or removes releases there until "
            "a node with that computer_id is formatted (check the name)",
            args.node,
        )
    if args.software_state == "destroyed":
        if state in ("absent", "no-computer"):
            log.warning(
                "%s is not supplied to %s (unknown there): nothing to remove",
                args.software_url,
                args.node,
            )
            return ExitCode.OK
        log.info("Requesting deletion of %s Software Release...", args.software_url)
    else:
        log.info("Requesting software installation of %s...", args.software_url)
    try:
        connection.registerSupply().supply(software, args.node, args.software_state)
    except NotFoundError as exc:
        raise MasterError(str(exc)) from None
    log.info("Done.")
    return ExitCode.OK


def supply_state(connection: slap, software: str, node: str) -> str | None:
    """Whether `software` is supplied to `node`: "available", "destroyed" (being removed),
    "absent" (never supplied), "no-computer" (the master knows no such node), or None when
    the master does not tell this client."""
    from slapos.slap import NotFoundError

    try:
        releases = connection.registerComputer(node).getSoftwareReleaseList()
    except NotFoundError as exc:
        log.debug("no computer %s at the master: %s", node, exc)
        return "no-computer"
    except Exception as exc:  # a real master may refuse: then say nothing
        log.debug("cannot read the releases supplied to %s: %s", node, exc)
        return None
    for release in releases:
        if release.getURI() == software:
            return release.getState()
    return "absent"
