"""`slapos configure local|client`: set up a node with a local master (local.py), or a
client of a master (client.py)."""

from __future__ import annotations

from slapos.cli._common import SlapOSArgumentParser, SubParsers, add_group, register_module
from slapos.cli.registry import areas_of


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    _, configure = add_group(sub, "configure", help="set up a node or a client")
    for name in areas_of("configure", getattr(root, "command_words", ())):
        register_module(name, configure, root)
