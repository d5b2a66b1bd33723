"""`slapos cachelookup binary-sr|url|pypi` (and the seed's `cache lookup`): what the
networkcache holds for a software release, a URL or a Python package.
"""

from __future__ import annotations

import argparse

from slapos.cli._common import (
    SlapOSArgumentParser,
    add_command,
    add_group,
    add_node_cfg,
    not_implemented,
)


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    _, lookup = add_group(sub, "cachelookup", help="query the networkcache")
    _, seed = add_group(sub, "cache", help="query the networkcache (seed spelling)")
    for target, words, hidden in (
        (lookup, ("cachelookup", "binary-sr"), False),
        (seed, ("cache", "lookup"), True),
    ):
        p = add_command(
            target, root, words, group="cachelookup", help="perform a query to the networkcache",
            hidden=hidden,
        )
        add_node_cfg(p)
        p.add_argument("software_url", help="Your software url or MD5 hash")
        p.set_defaults(handler=not_implemented("cachelookup binary-sr"))
    p = add_command(
        lookup, root, ("cachelookup", "url"), group="cachelookup",
        help="perform a query to the networkcache.",
    )
    add_node_cfg(p)
    p.add_argument("url", help="URL to query")
    p.set_defaults(handler=not_implemented("cachelookup url"))
    p = add_command(
        lookup, root, ("cachelookup", "pypi"), group="cachelookup",
        help="perform a query to the networkcache.",
    )
    add_node_cfg(p)
    p.add_argument("name", help="python package name")
    p.add_argument("version", help="python package version")
    p.set_defaults(handler=not_implemented("cachelookup pypi"))
