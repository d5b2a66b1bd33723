"""`slapos configure local`: a node with its own master (slapproxy), configured, started and
formatted in one command."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from slapos.cli._common import (
    Commands,
    SlapOSArgumentParser,
    SubParsers,
    add_partition_layout_options,
)
from slapos.wording import counted

if TYPE_CHECKING:
    from slapos.cli.context import Context

log = logging.getLogger(__name__)


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = Commands(sub, root, group="other", cfg="node").add(
        ("configure", "local"),
        run_configure_local,
        "Configure a slapos node, from scratch to ready-to-use, using slapproxy.",
    )
    add_partition_layout_options(
        p,
        partitions=20,
        ipv4_default=None,
        ipv4_help="default: 127.10.0.0/16 on lo, 10.0.0.0/16 on other interfaces",
    )
    p.add_argument(
        "--daemon-listen-ip",
        default="127.0.0.1",
        help='Listening IP of the "slapproxy" daemon (default: %(default)s)',
    )
    p.add_argument(
        "--daemon-listen-port",
        type=_port,
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
    p.add_argument(
        "--user-base-name",
        default="slapuser",
        help="As root: partition N runs as user USER_BASE_NAMEN (default: %(default)s)",
    )
    p.add_argument(
        "--software-user",
        default="slapsoft",
        help="As root: the user that builds software releases (default: %(default)s)",
    )


def _port(value: str) -> int:
    """--daemon-listen-port: 1 to 65535."""
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value!r}")
    return port


def run_configure_local(args: argparse.Namespace, ctx: Context) -> int:
    """slapos configure local: node + proxy + client configuration, proxy started, formatted."""
    from slapos.cli.configure.local_setup import (
        ROOT_NETWORK,
        UNPRIVILEGED_NETWORK,
        LocalSettings,
        configure_local,
    )
    from slapos.cli.main import main

    if args.cfg:
        log.debug(
            "--cfg is not used by configure local: the configuration is written in %s",
            args.slapos_configuration_directory,
        )
    privileged = ctx.is_root
    settings = LocalSettings(
        config_dir=ctx.expand(args.slapos_configuration_directory).absolute(),
        instance_root=ctx.expand(args.slapos_instance_root).absolute(),
        software_root=ctx.expand(args.slapos_software_root).absolute(),
        home=ctx.expand(args.slapos_buildout_directory).absolute(),
        interface_name=args.interface_name,
        ipv4_local_network=args.ipv4_local_network
        or (UNPRIVILEGED_NETWORK if args.interface_name == "lo" else ROOT_NETWORK),
        partition_amount=args.partition_number,
        listen_ip=args.daemon_listen_ip,
        listen_port=args.daemon_listen_port,
        privileged=privileged,
        alter_network=privileged and args.interface_name != "lo",
        shacache=args.enable_shacache_proxy,
        user_base_name=args.user_base_name,
        software_user=args.software_user,
    )
    cfg = str(settings.node_config)
    configure_local(
        settings, ctx.runner, lambda: main(["node", "format", "--cfg", cfg, "--now"], ctx)
    )
    print_summary(settings, ctx)
    return 0


def print_summary(settings: object, ctx: Context) -> None:
    from slapos.cli.configure.local_setup import LocalSettings

    assert isinstance(settings, LocalSettings)
    ctx.stdout.write(
        f"SlapOS node ready: {counted(settings.partition_amount, 'partition')}, proxy at "
        f"{settings.master_url}\n"
        f"  node configuration:   {settings.node_config}\n"
        f"  client configuration: {settings.client_config}\n"
        f"  instances under {settings.instance_root}, software under {settings.software_root}\n"
        f"next: slapos supply URL local_computer --cfg {settings.client_config}, then "
        f"slapos node software --cfg {settings.node_config}\n"
    )
