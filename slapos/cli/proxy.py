"""`slapos proxy start|show|migrate|revoke`: the stand-alone master, a look into its
database, a checked copy of that database into another (sqlite to PostgreSQL), and
revocation of the client certificates it accepts."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from slapos.cli._common import (
    Commands,
    SlapOSArgumentParser,
    SubParsers,
    add_format_option,
    add_group,
)
from slapos.cli.context import Context
from slapos.wording import counted

log = logging.getLogger(__name__)


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    _, parsers = add_group(sub, "proxy", help="the stand-alone SlapOS master")
    proxy = Commands(parsers, root, group="other", cfg="node")
    p = proxy.add(("proxy", "start"), run_start, "minimalist, stand-alone SlapOS Master")
    _add_database_uri(p, "database: a sqlite file path or a postgresql:// URI")
    p.add_argument("--port", type=int, help="Port to use")
    p.add_argument("--host", help="Host to use")
    p.add_argument("--local-software-release-root", help="Root path for local Software Releases")

    p = proxy.add(("proxy", "show"), run_show, "display proxy instances and parameters")
    _add_database_uri(p, "database: a sqlite file path or a postgresql:// URI")
    for flag, text in (
        ("--computers", "view computer information"),
        ("--software", "view software releases"),
        ("--partitions", "view partitions"),
        ("--slaves", "view slave instances"),
        ("--params", "view published parameters"),
        ("--network", "view network settings"),
    ):
        p.add_argument(flag, action="store_true", help=text)
    add_format_option(p, "output format: aligned tables (default) or JSON")

    p = proxy.add(
        ("proxy", "migrate"),
        run_migrate,
        "copy the proxy database into another one (sqlite to PostgreSQL), checked",
    )
    _add_database_uri(p, "the database to copy (default: database_uri of --cfg)")
    p.add_argument(
        "--to",
        required=True,
        metavar="URI",
        help="the empty target database: postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME",
    )

    p = proxy.add(
        ("proxy", "revoke"), run_revoke, "refuse a client certificate from now on (with tls_ca)"
    )
    _add_database_uri(p, "the database (default: database_uri of --cfg)")
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="an identity (COMP/slappart0, computer:COMP, user:alice) or a certificate's "
        "exact common name; the certificate the proxy issued for it is revoked, and the "
        "next one it issues gets a new name",
    )
    p.add_argument("--list", action="store_true", help="list the revoked certificate names")


def _add_database_uri(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("-u", "--database-uri", help=help)


def _config_path(args: argparse.Namespace, ctx: Context, *, optional: bool) -> Path | None:
    path = ctx.node_config_path(getattr(args, "cfg", None))
    if optional and getattr(args, "cfg", None) is None and not path.exists():
        return None
    return path


#: The name `slapos configure local` (and the demo) gives the proxy's configuration, next to
#: the node's slapos.cfg and the client's slapos-client.cfg.
PROXY_CONFIG_NAME = "slapos-proxy.cfg"


def _database_config_path(args: argparse.Namespace, ctx: Context) -> Path | None:
    """The configuration that names the proxy's database, for show and migrate.

    Given a node or client configuration (no database_uri), the proxy's configuration next
    to it is read instead, and said so; with none given and no default, one line says what
    to pass.
    """
    from slapos.config import IniFile
    from slapos.errors import ConfigError

    given = getattr(args, "cfg", None)
    path = _config_path(args, ctx, optional=args.database_uri is not None)
    if path is None or args.database_uri is not None:
        return path
    if not path.exists():
        if given is None:
            raise ConfigError(
                f"no proxy configuration: {path} does not exist (pass the proxy's with --cfg, "
                f"e.g. DIR/etc/{PROXY_CONFIG_NAME} as slapos configure local writes it, "
                "or the database with --database-uri)"
            )
        return path
    ini = IniFile.read(path)
    if any(ini.get(section, "database_uri") for section in ("slapproxy", "slapos")):
        return path
    sibling = path.parent / PROXY_CONFIG_NAME
    if sibling != path and sibling.exists():
        log.info("%s names no database: reading the proxy's configuration, %s", path, sibling)
        return sibling
    return path


def run_start(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.cli.logsetup import add_file_log
    from slapos.proxy.config import load_proxy_config
    from slapos.proxy.panel import panel_url
    from slapos.proxy.server import serve

    config = load_proxy_config(
        _config_path(args, ctx, optional=False),
        {
            "database_uri": args.database_uri,
            "port": args.port,
            "host": args.host,
            "local_software_release_root": args.local_software_release_root,
        },
    )
    if config.log_file and not getattr(args, "log_file", None):
        add_file_log(str(ctx.expand(config.log_file)))
    serve(config, on_ready=lambda url: log.info("web panel: %s", panel_url(url)))
    return 0


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.proxy.config import load_proxy_config
    from slapos.proxy.show import SECTIONS, show

    config = load_proxy_config(
        _database_config_path(args, ctx), {"database_uri": args.database_uri}, for_start=False
    )
    wanted = [name for name in SECTIONS if getattr(args, name)] or list(SECTIONS)
    show(config.database_uri, wanted, ctx.stdout, fmt=args.format)
    return 0


def run_migrate(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.proxy.config import load_proxy_config
    from slapos.proxy.migrate import migrate

    config = load_proxy_config(
        _database_config_path(args, ctx), {"database_uri": args.database_uri}, for_start=False
    )
    report = migrate(config.database_uri, args.to)
    copied = ", ".join(f"{count} {table}" for table, count in report.counts.items())
    print(f"copied {report.source} into {report.target}: {copied or 'no rows'}", file=ctx.stdout)
    print(
        f"checked: every table has the same rows, {counted(report.computers, 'computer')} "
        f"and {counted(report.partitions, 'partition')} read the same",
        file=ctx.stdout,
    )
    print("now point [slapproxy] database_uri at the target and start the proxy", file=ctx.stdout)
    return 0


def run_revoke(args: argparse.Namespace, ctx: Context) -> int:
    import time

    from slapos.errors import UsageError
    from slapos.proxy.config import load_proxy_config
    from slapos.proxy.db import open_database
    from slapos.proxy.identity import revoke
    from slapos.proxy.service import Master
    from slapos.proxy.store import Store

    if not args.names and not args.list:
        raise UsageError("give the NAME of a certificate to revoke, or --list")
    config = load_proxy_config(
        _config_path(args, ctx, optional=args.database_uri is not None),
        {"database_uri": args.database_uri},
        for_start=False,
    )
    database = open_database(config.database_uri)
    conn = database.connect()
    try:
        database.initialize(conn)
        with database.write_transaction(conn):
            master = Master(Store(conn), config.computer_id, time.time)
            for name in args.names:
                refused = revoke(master, name, time.time())
                if refused:
                    ctx.stdout.write("".join(f"revoked {cn}\n" for cn in refused))
                else:
                    ctx.stdout.write(f"{name} was already revoked\n")
            if args.list:
                for cn, when in master.store.revoked_certificates():
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))
                    ctx.stdout.write(f"{cn}\t{stamp} UTC\n")
    finally:
        conn.close()
    return 0
