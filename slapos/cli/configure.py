"""`slapos configure local|client`: set up a node with a local master, or a client."""

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
    from slapos.cli.client import register_configure_client

    _, configure = add_group(sub, "configure", help="set up a node or a client")
    register_configure_client(configure, root)
    p = add_command(
        configure,
        root,
        ("configure", "local"),
        group="other",
        help="Configure a slapos node, from scratch to ready-to-use, using slapproxy.",
    )
    add_node_cfg(p)
    p.add_argument(
        "--interface-name",
        default="lo",
        help="Primary network interface. IP of Partitions will be added to it (default: %(default)s)",
    )
    p.add_argument(
        "--partition-number",
        type=int,
        default=20,
        help="Number of partitions to create in the SlapOS Node (default: %(default)s)",
    )
    p.add_argument(
        "--ipv4-local-network",
        default="10.0.0.0/16",
        help="Subnetwork used to assign local IPv4 addresses. It should be a not used network "
        "in order to avoid conflicts (default: %(default)s)",
    )
    p.add_argument(
        "--daemon-listen-ip",
        default="127.0.0.1",
        help='Listening IP of the "slapproxy" daemon (default: %(default)s)',
    )
    p.add_argument(
        "--daemon-listen-port",
        type=int,
        default=8080,
        help='Listening port of the "slapproxy" daemon (default: %(default)s)',
    )
    p.add_argument(
        "--slapos-instance-root",
        default="/srv/slapgrid",
        help="Target location of the instances (default: %(default)s)",
    )
    p.add_argument(
        "--slapos-software-root",
        default="/opt/slapgrid",
        help="Target location of the software releases (default: %(default)s)",
    )
    p.add_argument(
        "--slapos-buildout-directory",
        default="/opt/slapos",
        help="Target location of the SlapOS buildout directory (default: %(default)s)",
    )
    p.add_argument(
        "--slapos-configuration-directory",
        default="/etc/opt/slapos",
        help="Target location of the SlapOS configuration directory (default: %(default)s)",
    )
    p.add_argument(
        "--enable-shacache-proxy",
        action="store_true",
        help="Enable built-in shacache/shadir proxy on slapproxy. Configures local cache "
        "directories, signing key, and upstream URLs. Also configures slapos node to use the "
        "local proxy as binary cache. (default: False)",
    )
    p.set_defaults(handler=not_implemented("configure local"))
