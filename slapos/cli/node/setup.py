"""`slapos node format|register|boot`: cut the node into partitions, register it with a
master, bring it back after a reboot.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from slapos.cli._common import (
    Commands,
    SlapOSArgumentParser,
    SubParsers,
    add_message_option,
    add_no_master_tls_verify,
    add_partition_layout_options,
    str2bool,
)
from slapos.wording import counted

if TYPE_CHECKING:
    from pathlib import Path

    from slapos.cli.context import Context
    from slapos.config import IniFile

log = logging.getLogger(__name__)
#: node format sleeps up to this long unless --now (upstream: spread the load on the master)
FORMAT_MAX_DELAY = 3600.0


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    """format, register and boot: the commands that set a node up (each parser sits above
    its handler)."""
    node = Commands(sub, root, group="node", cfg="node")
    _register_format(node)
    _register_register(node)
    p = node.add(
        ("node", "boot"),
        run_boot,
        "Test network and invoke simple format and bang (Use on Linux startup)",
    )
    add_message_option(p)


def _register_format(node: Commands) -> None:
    p = node.add(
        ("node", "format"), run_format, "create users, partitions and network configuration"
    )
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


def run_format(args: argparse.Namespace, ctx: Context) -> int:
    """slapos node format: plan, then (unless --dry-run) apply and tell the master."""
    import random

    from slapos.errors import ExitCode, SlapOSError
    from slapos.format import apply
    from slapos.format.config import load_format_config

    _, ini = _read_as_root(args, ctx, "slapos", "slapformat")
    config = load_format_config(
        ini,
        {
            "computer_xml": args.computer_xml,
            "computer_json": args.computer_json,
            "input_definition_file": args.input_definition_file,
            "output_definition_file": args.output_definition_file,
            "alter_user": args.alter_user,
            "alter_network": args.alter_network,
            "dry_run": args.dry_run or None,
        },
    )
    if config.log_file is not None and not getattr(args, "log_file", None):
        _add_log_file(config.log_file)
    if config.dry_run:
        log.info("dry run: nothing will be changed")
    if not args.now and not config.dry_run:  # a plan changes nothing: no load to spread
        delay = random.random() * FORMAT_MAX_DELAY
        log.info("sleeping for %.0f seconds (use --now to format at once)", delay)
        ctx.clock.sleep(delay)
    plan = apply.prepare(config, ctx.runner)
    if config.output_definition_file is not None:
        from slapos.format.model import write_definition
        from slapos.system import write_file_atomic

        write_file_atomic(config.output_definition_file, write_definition(plan.computer))
        log.info("stored computer definition in %s", config.output_definition_file)
    if config.dry_run:
        _print_plan(plan, config.computer_id, ctx)
        return ExitCode.OK
    apply.apply_plan(plan, ctx.runner)
    if plan.actions:
        log.info("node formatted: %s made", counted(len(plan.actions), "change"))
    else:
        log.info("node already formatted: nothing changed")
    log.info("posting the computer description to %s", config.master_url)
    try:
        apply.post_configuration(config, plan.computer)
    except SlapOSError as exc:
        log.error("formatted, but the master was not told: %s", exc)
        return ExitCode.FORMAT_OFFLINE_SUCCESS
    return ExitCode.OK


def _read_as_root(args: argparse.Namespace, ctx: Context, *sections: str) -> tuple[Path, IniFile]:
    """slapos.cfg, once root is checked (unless root_check of the first of `sections` that
    sets it says false)."""
    from slapos.config import NODE_CONFIG_HINT, IniFile, parse_bool

    path = ctx.node_config_path(args.cfg)
    ini = IniFile.read(path, NODE_CONFIG_HINT)
    for section in sections:
        raw = ini.get(section, "root_check")
        if raw:
            ctx.require_root(parse_bool(raw, f"{path}: [{section}] root_check"))
            return path, ini
    ctx.require_root()
    return path, ini


def _print_plan(plan: object, computer_id: str, ctx: Context) -> None:
    from slapos.format.plan import FormatPlan

    assert isinstance(plan, FormatPlan)
    if not plan.actions:
        ctx.stdout.write(f"{computer_id}: nothing to change\n")
        return
    ctx.stdout.write(f"{computer_id}: {counted(len(plan.actions), 'change')} planned\n")
    for action in plan.actions:
        ctx.stdout.write(f"  {action.describe()}\n")


def _add_log_file(path: object) -> None:
    """[slapformat] log_file: an extra log file when --log-file was not given (upstream)."""
    from pathlib import Path

    target = Path(str(path))
    logger = logging.getLogger("slapos")
    for existing in logger.handlers:  # node boot and the demo run format more than once
        if isinstance(existing, logging.FileHandler) and existing.baseFilename == str(target):
            return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(target)
    except OSError as exc:
        log.warning("cannot log to %s: %s", target, exc.strerror)
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    logger.addHandler(handler)


def _register_register(node: Commands) -> None:
    p = node.add(("node", "register"), run_register, "Register a new computer on SlapOS Master.")
    p.add_argument("node_name", help="Chosen title for the node")
    add_partition_layout_options(
        p,
        partitions=10,
        ipv4_default="10.0.0.0/16",
        ipv4_help="default: %(default)s",
        master_urls=True,
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
    add_no_master_tls_verify(p)


def run_register(args: argparse.Namespace, ctx: Context) -> int:
    """slapos node register NAME: certificate from the master, node configuration written."""
    from slapos.errors import UsageError
    from slapos.format.register import Registration, register

    for option, value in (
        ("--login", args.login),
        ("--password", args.password),
        ("--login-auth", args.login_auth),
    ):
        if value:
            raise UsageError(f"{option} is obsolete: masters only accept a token (--token)")
    ctx.require_root()
    token = (args.token or "").strip()
    while not token and not args.dry_run:
        ctx.stdout.write("Computer security token: ")
        ctx.stdout.flush()
        line = ctx.stdin.readline()
        if not line:
            raise UsageError("no computer security token given (pass --token)")
        token = line.strip()
    config_path = ctx.node_config_path(args.cfg)
    reg = Registration(
        node_name=args.node_name,
        token=token,
        master_url=args.master_url,
        master_url_web=args.master_url_web,
        config_dir=config_path.parent,
        interface_name=args.interface_name,
        ipv6_interface=args.ipv6_interface,
        partition_number=args.partition_number,
        ipv4_local_network=args.ipv4_local_network,
        software_root=args.software_root or "/opt/slapgrid",
        instance_root=args.instance_root or "/srv/slapgrid",
        create_tap=args.create_tap,
        dry_run=args.dry_run,
        master_tls_verify=args.master_tls_verify,
    )
    computer_id = register(reg)
    if not args.dry_run:
        log.info("node has successfully been configured as %s", computer_id)
        log.info("now please invoke slapos node boot on your site")
    return 0


def run_boot(args: argparse.Namespace, ctx: Context) -> int:
    """slapos node boot: wait for IPv6, format, bang, reprocess every partition."""
    from pathlib import Path
    from urllib.parse import urlsplit

    from slapos.cli.main import main
    from slapos.config import parse_bool
    from slapos.errors import ConfigError
    from slapos.format.boot import BootSettings, boot

    path, ini = _read_as_root(args, ctx, "slapos")
    master = urlsplit(ini.require("slapos", "master_url"))
    try:
        port = master.port or (443 if master.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"{path}: [slapos] master_url has a bad port") from None
    alter_network = ini.get("slapformat", "alter_network")
    # a node whose network format does not touch needs no IPv6 to boot (upstream waited)
    needs_ipv6 = (
        parse_bool(alter_network, f"{path}: [slapformat] alter_network")
        if (alter_network)
        else True
    )
    settings = BootSettings(
        instance_root=Path(ini.require("slapos", "instance_root")),
        partition_base_name=ini.get("slapformat", "partition_base_name") or "slappart",
        master_host=master.hostname,
        master_port=port,
        ipv6_interface=(
            ini.get("slapformat", "ipv6_interface") or ini.get("slapformat", "interface_name")
        )
        if needs_ipv6
        else None,
        message=args.message or "Reboot",
    )
    cfg = str(path)
    boot(
        settings,
        runner=ctx.runner,
        clock=ctx.clock,
        run_format=lambda: main(["node", "format", "--cfg", cfg, "--now"], ctx),
        run_bang=lambda message: main(["node", "bang", "--cfg", cfg, "-m", message], ctx),
    )
    log.info("[BOOT] done: every partition will be processed again by node instance")
    return 0
