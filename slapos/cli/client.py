"""Client commands: request, supply, remove, service list|info, computer list|info|token.
They read slapos-client.cfg and talk to the master through slapos.slap.
"""

from __future__ import annotations

import argparse

from slapos.cli._common import (
    Context,
    Handler,
    SlapOSArgumentParser,
    add_client_cfg,
    add_command,
    add_group,
)

TYPE_CHECKING = False  # typing is not imported at run time (`slapos request --help`)
if TYPE_CHECKING:
    from typing import TypeAlias

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _handler(name: str) -> Handler:
    """The handler `name` of slapos.cli.client_handlers, imported only when it runs."""

    def run(args: argparse.Namespace, ctx: Context) -> int:
        from slapos.cli import client_handlers

        return int(getattr(client_handlers, name)(args, ctx))

    run.__name__ = run.__qualname__ = name
    return run


run_request = _handler("run_request")
run_supply = _handler("run_supply")
run_service_list = _handler("run_service_list")
run_service_info = _handler("run_service_info")
run_computer_list = _handler("run_computer_list")
run_computer_info = _handler("run_computer_info")
run_computer_token = _handler("run_computer_token")

#: The commands `register` builds for each first word (all of them without one): one
#: command's help or run builds that command's parser only.
PARTS = {
    "request": ("request",),
    "supply": ("supply",),
    "remove": ("supply",),
    "service": ("service",),
    "list": ("service",),
    "info": ("service",),
    "computer": ("computer",),
}


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="output format: human-readable text (default) or JSON for scripts",
    )


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    words = getattr(root, "command_words", ())
    parts = PARTS.get(words[0], ()) if words else ()
    for part, build in (
        ("request", _register_request),
        ("supply", _register_supply),
        ("service", _register_service),
        ("computer", _register_computer),
    ):
        if not parts or part in parts:
            build(sub, root)


def _register_request(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = add_command(
        sub,
        root,
        ("request",),
        group="client",
        help="request an instance and get status and parameters of instance",
    )
    add_client_cfg(p)
    p.add_argument("reference", help="Your instance reference (for now it is its title)")
    p.add_argument("software_url", help="Your software url (or an alias, or product.NAME)")
    p.add_argument(
        "--node",
        nargs="+",
        metavar="NODE",
        help="Node request option 'option1=value1 option2=value2' (i.e. computer_guid=COMP-1234)",
    )
    p.add_argument("--type", help="Software type to be requested")
    p.add_argument("--state", help="State of the requested instance")
    p.add_argument("--slave", action="store_true", help="Ask for a slave instance")
    p.add_argument(
        "--force-serialisation",
        choices=("xml", "json-in-xml"),
        help="Enforce serialisation of instance parameters when using --parameters-file",
    )
    params = p.add_mutually_exclusive_group()
    params.add_argument(
        "--parameters",
        "--configuration",
        nargs="+",
        metavar="PARAMETERS",
        help="Instance parameters, in the form 'option1=value1 option2=value2'.",
    )
    params.add_argument(
        "--parameters-file",
        metavar="PARAMETERS_FILE",
        help="Instance parameters, in a file. The file will be interpreted as json, yaml or "
        "xml depending on the file extension.",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until the instance is ready, showing progress, then print its connection "
        "parameters",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="with --wait, give up after this many seconds (default: 600)",
    )
    add_format_option(p)
    p.set_defaults(handler=run_request)


def _register_supply(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    for name, desc, state in (
        ("supply", "supply a Software to a node", "available"),
        ("remove", "remove a Software from a node", "destroyed"),
    ):
        p = add_command(sub, root, (name,), group="client", help=desc)
        add_client_cfg(p)
        p.add_argument("software_url", help="Your software url (or an alias, or product.NAME)")
        p.add_argument("node", help="Target node")
        p.set_defaults(handler=run_supply, software_state=state)


def _register_service(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    _, service = add_group(sub, "service", help="manage your services (instances)")
    for words, hidden in ((("service",), False), ((), True)):
        target = service if words else sub
        p = add_command(
            target,
            root,
            (*words, "list"),
            group="client",
            help="List the title of all your slapos services",
            hidden=hidden,
        )
        add_client_cfg(p)
        add_format_option(p)
        p.set_defaults(handler=run_service_list)
        p = add_command(
            target,
            root,
            (*words, "info"),
            group="client",
            help="get status, software_release and parameters of an instance",
            hidden=hidden,
        )
        add_client_cfg(p)
        p.add_argument("reference", help="Your instance reference (for now it is its title)")
        p.add_argument("--news", action="store_true", help="Include raw news in output")
        add_format_option(p)
        p.set_defaults(handler=run_service_info)


def _register_computer(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    _, computer = add_group(sub, "computer", help="manage your computers (nodes)")
    p = add_command(
        computer,
        root,
        ("computer", "list"),
        group="client",
        help="List all available compute nodes",
    )
    add_client_cfg(p)
    add_format_option(p)
    p.set_defaults(handler=run_computer_list)
    p = add_command(
        computer, root, ("computer", "info"), group="client", help="get information of an computer"
    )
    add_client_cfg(p)
    p.add_argument("reference", help="Your computer reference")
    add_format_option(p)
    p.set_defaults(handler=run_computer_info)
    p = add_command(
        computer, root, ("computer", "token"), group="client", help="get token for setup a computer"
    )
    add_client_cfg(p)
    add_format_option(p)
    p.set_defaults(handler=run_computer_token)
