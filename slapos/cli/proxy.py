"""`slapos proxy start|show`: the stand-alone master and a look into its database."""

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
    _, proxy = add_group(sub, "proxy", help="the stand-alone SlapOS master")
    p = add_command(
        proxy, root, ("proxy", "start"), group="other", help="minimalist, stand-alone SlapOS Master"
    )
    add_node_cfg(p)
    p.add_argument("-u", "--database-uri", help="URI for sqlite database")
    p.add_argument("--port", type=int, help="Port to use")
    p.add_argument("--host", help="Host to use")
    p.add_argument(
        "--local-software-release-root", help="Root path for local Software Releases"
    )
    p.set_defaults(handler=not_implemented("proxy start"))

    p = add_command(
        proxy, root, ("proxy", "show"), group="other", help="display proxy instances and parameters"
    )
    add_node_cfg(p)
    p.add_argument("-u", "--database-uri", help="URI for sqlite database")
    for flag, text in (
        ("--computers", "view computer information"),
        ("--software", "view software releases"),
        ("--partitions", "view partitions"),
        ("--slaves", "view slave instances"),
        ("--params", "view published parameters"),
        ("--network", "view network settings"),
    ):
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="output format: aligned tables (default) or JSON",
    )
    p.set_defaults(handler=not_implemented("proxy show"))
