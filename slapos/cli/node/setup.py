"""`slapos node format|register|boot`: cut the node into partitions, register it with a
master, bring it back after a reboot.
"""

from __future__ import annotations

import argparse

from slapos.cli._common import (
    SlapOSArgumentParser,
    add_command,
    add_node_cfg,
    not_implemented,
    str2bool,
)


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub,
        root,
        ("node", "format"),
        group="node",
        help="create users, partitions and network configuration",
    )
    add_node_cfg(p)
    p.add_argument(
        "-x",
        "--computer_xml",
        "--computer-xml",
        dest="computer_xml",
        help="Path to file with computer's XML. If does not exists, will be created",
    )
    p.add_argument(
        "--computer_json",
        "--computer-json",
        dest="computer_json",
        help="Path to a JSON version of the computer's XML (for development only)",
    )
    p.add_argument(
        "-i",
        "--input_definition_file",
        "--input-definition-file",
        dest="input_definition_file",
        help="Path to file to read definition of computer instead of declaration. Using "
        "definition file allows to disable 'discovery' of machine services and allows to "
        "define computer configuration in fully controlled manner.",
    )
    p.add_argument(
        "-o",
        "--output_definition_file",
        "--output-definition-file",
        dest="output_definition_file",
        help="Path to file to write definition of computer from declaration.",
    )
    p.add_argument(
        "--alter_user",
        "--alter-user",
        dest="alter_user",
        type=str2bool,
        metavar="{True,False}",
        help="Shall slapformat alter user database (default: True)",
    )
    p.add_argument(
        "--alter_network",
        "--alter-network",
        dest="alter_network",
        type=str2bool,
        metavar="{True,False}",
        help="Shall slapformat alter network configuration (default: True)",
    )
    p.add_argument(
        "--now", action="store_true", help="Launch slapformat without delay (default: False)"
    )
    p.add_argument(
        "-n",
        "--dry_run",
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="Don't actually do anything, print the plan (default: False)",
    )
    p.add_argument("-c", "--console", help="Console output (obsolete)")
    p.set_defaults(handler=not_implemented("node format"))

    p = add_command(
        sub,
        root,
        ("node", "register"),
        group="node",
        help="Register a new computer on SlapOS Master.",
    )
    add_node_cfg(p)
    p.add_argument("node_name", help="Chosen title for the node")
    p.add_argument(
        "--interface-name",
        default="lo",
        help="Primary network interface. IP of Partitions will be added to it (default: %(default)s)",
    )
    p.add_argument(
        "--master-url",
        default="https://slap.vifib.com",
        help="URL of SlapOS Master REST API (default: %(default)s)",
    )
    p.add_argument(
        "--master-url-web",
        default="https://panel.rapid.space",
        help="URL of SlapOS Master webservice to register certificates (default: %(default)s)",
    )
    p.add_argument(
        "--partition-number",
        type=int,
        default=10,
        help="Number of partitions to create in the SlapOS Node (default: %(default)s)",
    )
    p.add_argument(
        "--ipv4-local-network",
        default="10.0.0.0/16",
        help="Subnetwork used to assign local IPv4 addresses. It should be a not used network "
        "in order to avoid conflicts (default: %(default)s)",
    )
    p.add_argument(
        "--ipv6-interface",
        help="Interface whose global IPv6 prefix partitions use (default: the primary interface)",
    )
    p.add_argument("--software-root", help="Path of the software directory")
    p.add_argument("--instance-root", help="Path of the instance directory")
    p.add_argument("--token", help="SlapOS 'computer security' authentication token")
    p.add_argument("--login", help="Obsolete: masters no longer accept a login, use --token")
    p.add_argument("--password", help="Obsolete: masters no longer accept a password, use --token")
    p.add_argument(
        "--login-auth",
        action="store_true",
        help="Obsolete: masters no longer accept a login, use --token",
    )
    p.add_argument(
        "--create-tap",
        "-t",
        action="store_true",
        help='Will trigger creation of one virtual "tap" interface per Partition and attach it '
        "to primary interface. Requires primary interface to be a bridge. Needed to host "
        "virtual machines (default: False)",
    )
    p.add_argument(
        "--dry-run",
        "-n",
        action="store_true",
        help="Simulate the execution steps (default: False)",
    )
    p.set_defaults(handler=not_implemented("node register"))

    p = add_command(
        sub,
        root,
        ("node", "boot"),
        group="node",
        help="Test network and invoke simple format and bang (Use on Linux startup)",
    )
    add_node_cfg(p)
    p.add_argument("-m", "--message", help="Message for bang")
    p.set_defaults(handler=not_implemented("node boot"))
