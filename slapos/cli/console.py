"""`slapos console`: a Python shell (IPython, bpython or plain) or a script, with the slap
library connected. IPython and bpython are imported only when their shell is started.
"""

from __future__ import annotations

import argparse
import sys

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers
from slapos.cli.client import log
from slapos.cli.context import Context
from slapos.errors import ExitCode, SlapOSError, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (`slapos console --help`)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO


EXAMPLES = """\
examples :
>>> # Request instance
>>> request(kvm, "myuniquekvm")
>>> # Request software installation on owned computer
>>> supply(kvm, "mycomputer")
>>> # Fetch instance informations on already launched instance
>>> request(kvm, "myuniquekvm").getConnectionParameter("url")
"""

DESCRIPTION = (
    "open python console with slap library imported\n\n"
    'You can play with the global "slap" object and with the global request() and\n'
    "supply() methods, and resolve products with product.NAME.\n\n"
    + EXAMPLES.replace("\n>>>", "\n  >>>")
)


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = Commands(sub, root, group="client", cfg="client").add(
        ("console",),
        run_console,
        "open python console with slap library imported",
        description=DESCRIPTION,
    )
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


BANNER = (
    "slapos console allows you interact with slap API. You can play with the global\n"
    '"slap" object and with the global request() and supply() methods.\n\n' + EXAMPLES
)
HISTORY_FILE = "~/.slapconsolehistory"
EXIT_MESSAGE = "now exiting InteractiveConsole..."


def build_namespace(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """The console globals: slap, request, supply, getInformation, product."""
    import logging
    from dataclasses import replace

    from slapos.cli.client import PRODUCT_PREFIX, connect
    from slapos.slap import SoftwareProductCollection

    config = ctx.client_config(args, master_url=args.master_url)
    if args.key_file or args.cert_file:  # -k/-c win over the configuration file
        config = replace(
            config,
            key_file=args.key_file or config.key_file,
            cert_file=args.cert_file or config.cert_file,
        )
    connection = connect(config)
    product = SoftwareProductCollection(logging.getLogger("slapos"), connection)

    def software(url: str) -> str:
        url = config.resolve_alias(url)
        if url.startswith(PRODUCT_PREFIX):
            return product.get(url[len(PRODUCT_PREFIX) :])
        return url

    def request(software_release: str, partition_reference: str, *a: Any, **kw: Any) -> Any:
        return connection.registerOpenOrder().request(
            software(software_release), partition_reference, *a, **kw
        )

    def supply(software_release: str, computer_guid: str | None = None, **kw: Any) -> Any:
        return connection.registerSupply().supply(software(software_release), computer_guid, **kw)

    def getInformation(partition_reference: str) -> Any:
        return connection.registerOpenOrder().getInformation(partition_reference)

    namespace: dict[str, Any] = {
        "slap": connection,
        "request": request,
        "supply": supply,
        "getInformation": getInformation,
        "product": product,
        "__name__": "__console__",
        "__doc__": None,
    }
    namespace.update(config.aliases)  # `request(kvm, "x")` when [slapos.alias] kvm = URL
    return namespace


def run_script(
    path: str, argv: list[str], namespace: dict[str, Any], stderr: TextIO, stdin: TextIO
) -> int:
    """Run a script file (`-`: standard input, as python does) with the console's globals."""
    from pathlib import Path

    try:
        source = stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read script {path}: {exc.strerror or exc}") from None
    name = "<stdin>" if path == "-" else path  # sys.argv[0] stays "-", as python's
    namespace.update({"__file__": name, "__name__": "__main__"})
    old_argv = sys.argv
    sys.argv = [path, *argv]
    try:
        exec(compile(source, name, "exec"), namespace)
    except SystemExit as exc:
        if exc.code is None:
            return ExitCode.OK
        if isinstance(exc.code, int):
            return exc.code
        log.error("%s", exc.code)
        return ExitCode.FAILURE
    except SlapOSError:
        raise
    except Exception as exc:
        # the user's own code failed: show its traceback as Python would, from the
        # script's first frame (not this one), whatever the log level
        import traceback

        user_frames = exc.__traceback__.tb_next if exc.__traceback__ else None
        stderr.write("".join(traceback.format_exception(exc.with_traceback(user_frames))))
        return ExitCode.FAILURE
    finally:
        sys.argv = old_argv
    return ExitCode.OK


def plain_shell(namespace: dict[str, Any], ctx: Context) -> None:
    import code
    import os
    from pathlib import Path

    history = Path(os.path.expanduser(ctx.environ.get("HOME", "~"))) / ".slapconsolehistory"
    readline: Any = None
    try:
        import readline as _readline
        import rlcompleter

        readline = _readline
        readline.set_completer(rlcompleter.Completer(namespace).complete)
        readline.parse_and_bind("tab: complete")
        if history.exists():
            readline.read_history_file(str(history))
    except (ImportError, OSError):  # no readline here: the shell works without it
        readline = None
    try:
        code.interact(banner="", local=namespace, exitmsg="")
    finally:
        ctx.stderr.write(EXIT_MESSAGE + "\n")
        if readline is not None and history.parent.is_dir():
            try:
                readline.write_history_file(str(history))
            except OSError as exc:  # history is a convenience, never a failure
                log.debug("cannot write %s: %s", history, exc)


def ipython_shell(namespace: dict[str, Any], ctx: Context) -> None:
    import IPython

    ctx.stdout.write(BANNER)
    IPython.start_ipython(
        argv=["--no-banner", "--TerminalInteractiveShell.confirm_exit=False"], user_ns=namespace
    )


def bpython_shell(namespace: dict[str, Any], ctx: Context) -> None:
    import bpython

    bpython.embed(locals_=namespace, banner=BANNER)


SHELLS: dict[str, Callable[[dict[str, Any], Context], None]] = {
    "ipython": ipython_shell,
    "bpython": bpython_shell,
    "python": plain_shell,
}
SHELL_NAMES = {"ipython": "IPython", "bpython": "bpython"}


def choose_shell(requested: str | None) -> str:
    """The first usable shell: the requested one, else IPython, bpython, plain Python."""
    import importlib.util

    candidates = [requested] if requested else ["ipython", "bpython"]
    for name in candidates:
        if name == "python":
            return name
        if importlib.util.find_spec(SHELL_NAMES[name]) is not None:
            return name
        if requested:
            log.info("%s not available - using plain Python shell", SHELL_NAMES[name])
    return "python"


def run_console(args: argparse.Namespace, ctx: Context) -> int:
    script = list(args.script_file_and_arguments or [])
    if script and args.shell:
        raise UsageError("a script file cannot be combined with -i/-b/-p")
    if not script and not args.shell and not ctx.stdin.isatty():
        # piped in (`slapos console < x.py`): a script, as python runs one, not lines typed
        # at a prompt (where a block must end with an empty line, and prompts go to stdout)
        script = ["-"]
    namespace = build_namespace(args, ctx)
    if script:
        return run_script(script[0], script[1:], namespace, ctx.stderr, ctx.stdin)
    SHELLS[choose_shell(args.shell)](namespace, ctx)
    return ExitCode.OK
