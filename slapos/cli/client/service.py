"""`slapos service list|info` (and upstream's hidden spellings `slapos list|info`): the
instances of this account."""

from __future__ import annotations

import argparse

from slapos.cli._common import (
    Commands,
    SlapOSArgumentParser,
    SubParsers,
    add_format_option,
    add_group,
)
from slapos.cli.client import connect, decode_connection, emit_json, log
from slapos.cli.context import Context
from slapos.errors import ExitCode

TYPE_CHECKING = False  # typing is not imported at run time (`slapos service --help`)
if TYPE_CHECKING:
    from typing import Any


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    _, service = add_group(sub, "service", help="manage your services (instances)")
    for words, hidden in ((("service",), False), ((), True)):
        commands = Commands(service if words else sub, root, group="client", cfg="client")
        p = commands.add(
            (*words, "list"),
            run_service_list,
            "List the title of all your slapos services",
            hidden=hidden,
        )
        add_format_option(p)
        p = commands.add(
            (*words, "info"),
            run_service_info,
            "get status, software_release and parameters of an instance",
            hidden=hidden,
        )
        p.add_argument("reference", help="Your instance reference (for now it is its title)")
        p.add_argument("--news", action="store_true", help="Include raw news in output")
        add_format_option(p)


def run_service_list(args: argparse.Namespace, ctx: Context) -> int:
    connection = connect(ctx.client_config(args))
    trees = connection.getOpenOrderDict()
    result = {title: trees[title]._software_release_url for title in sorted(trees)}
    emit_json(ctx, result)
    return ExitCode.OK


def _news_status(news: Any) -> str:
    status = 0
    for entry in news or ():
        text = entry.get("text", "") if isinstance(entry, dict) else ""
        if text.startswith("#access"):
            status |= 1
        elif text.startswith("#error"):
            status |= 2
    return ("none", "green", "red", "orange")[status]


def run_service_info(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.slap import NotFoundError, ResourceNotReady
    from slapos.slap.schema import SoftwareReleaseSchema

    connection = connect(ctx.client_config(args))
    try:
        instance = connection.registerOpenOrder().getInformation(args.reference)
    except ResourceNotReady:
        log.warning("Instance does not exist or is not ready yet.")
        return ExitCode.USAGE
    except NotFoundError:
        log.warning("Instance %s does not exist.", args.reference)
        return ExitCode.USAGE
    software_url = instance._software_release_url
    software_type = getattr(instance, "_source_reference", None) or "default"
    schema = SoftwareReleaseSchema(str(software_url), software_type)
    info: dict[str, Any] = {
        "software-url": software_url,
        "software-type": software_type,
        "shared": bool(getattr(instance, "_root_slave", False)),
        "requested-state": instance._requested_state,
        "instance-parameters": instance._parameter_dict,
        "connection-parameters": decode_connection(
            instance._connection_dict, schema.serialisation()
        ),
    }
    news = getattr(instance, "_news", None)
    if isinstance(news, dict) and "instance" in news:
        info["status"] = _news_status(news["instance"])
        if args.news:
            info["news"] = news["instance"]
    else:
        info["status"] = "unsupported"
    for problem in schema.problems:
        log.debug("%s", problem)
    emit_json(ctx, info)
    return ExitCode.OK
