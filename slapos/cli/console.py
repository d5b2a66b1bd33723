"""`slapos console`: a Python shell (or a script) with the slap library connected."""

from __future__ import annotations

import argparse
from typing import TypeAlias

from slapos.cli._common import Context, SlapOSArgumentParser, add_client_cfg, add_command

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DESCRIPTION = """\
open python console with slap library imported

You can play with the global "slap" object and with the global request() and
supply() methods, and resolve products with product.NAME.

examples :
  >>> # Request instance
  >>> request(kvm, "myuniquekvm")
  >>> # Request software installation on owned computer
  >>> supply(kvm, "mycomputer")
  >>> # Fetch instance informations on already launched instance
  >>> request(kvm, "myuniquekvm").getConnectionParameter("url")
"""


def run_console(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.cli.console_run import console

    return console(args, ctx)


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = add_command(
        sub,
        root,
        ("console",),
        group="client",
        help="open python console with slap library imported",
        description=DESCRIPTION,
    )
    add_client_cfg(p)
    p.add_argument("-u", "--master_url", "--master-url", help="Url of SlapOS Master to use")
    p.add_argument("-k", "--key_file", "--key-file", help="SSL Authorisation key file")
    p.add_argument("-c", "--cert_file", "--cert-file", help="SSL Authorisation certificate file")
    shell = p.add_mutually_exclusive_group()
    shell.add_argument(
        "-i",
        "--ipython",
        dest="shell",
        action="store_const",
        const="ipython",
        help="Use IPython shell if available (default)",
    )
    shell.add_argument(
        "-b",
        "--bpython",
        dest="shell",
        action="store_const",
        const="bpython",
        help="Use BPython shell if available",
    )
    shell.add_argument(
        "-p",
        "--python",
        dest="shell",
        action="store_const",
        const="python",
        help="Use plain Python shell",
    )
    p.add_argument(
        "script_file_and_arguments", nargs=argparse.REMAINDER, help="Script to run, with arguments"
    )
    p.set_defaults(handler=run_console)
