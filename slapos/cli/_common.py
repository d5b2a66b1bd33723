"""What every command's parser shares: global options, --cfg, the command registry helpers.

The Context commands run in is slapos.cli.context.

Import-light: standard library and slapos.errors only, and not even dataclasses or pathlib
at import time (`slapos request --help` imports this module and argparse, and little else).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from slapos.errors import UnknownCommandError

TYPE_CHECKING = False  # typing is not imported at run time (`slapos COMMAND --help`)

if TYPE_CHECKING:
    from typing import Any, NoReturn, TypeAlias

    from slapos.cli.context import Context

Handler = Callable[[argparse.Namespace, "Context"], int]
#: What a family's or area's register(sub, root) adds its commands to.
SubParsers: TypeAlias = "argparse._SubParsersAction[SlapOSArgumentParser]"

#: --cfg's help, by the configuration it names
CFG_HELP = {
    "node": "SlapOS configuration file (default: $SLAPOS_CONFIGURATION or "
    "/etc/opt/slapos/slapos.cfg)",
    "client": "SlapOS configuration file (default: $SLAPOS_CLIENT_CONFIGURATION or "
    "~/.slapos/slapos-client.cfg)",
}


# ---- argument parsing ---------------------------------------------------------------


class ParserExit(Exception):
    """argparse wanted to exit (after --help, --version or a usage error)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class CommandInfo:
    """One leaf command: its words, listing group and help, and its parser."""

    __slots__ = ("defined_by", "group", "help", "hidden", "parser", "words")

    def __init__(
        self,
        words: tuple[str, ...],
        group: str,
        help: str,
        parser: argparse.ArgumentParser,
        hidden: bool = False,
    ) -> None:
        self.words = words
        self.group = group
        self.help = help
        self.parser = parser
        self.hidden = hidden
        #: The modules whose register() added it, outermost first (see register_module).
        self.defined_by: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return " ".join(self.words)


class SlapOSArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, and says "unknown command" with exit 5."""

    commands: list[CommandInfo]

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse would import shutil for the terminal width: the same answer, from os
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)  # type: ignore[call-arg]

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise ParserExit(status)

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument COMMAND: invalid choice"):
            word = message.split("invalid choice: ", 1)[1].split("'")[1]
            prefix = self.prog.split()[1:]
            choices = [
                name
                for action in self._actions
                if isinstance(action, argparse._SubParsersAction)
                for name in action.choices
            ]
            close = close_match(word, choices)
            hint = f"did you mean '{' '.join([*prefix, close])}'? " if close else ""
            raise UnknownCommandError(
                f"the command '{' '.join([*prefix, word])}' does not exist "
                f"({hint}see 'slapos {' '.join([*prefix, '--help'])}')"
            )
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")

    def unrecognized(self, extras: list[str]) -> NoReturn:
        """Arguments no parser took: this command's usage, and the option meant, if any."""
        options = [o for action in self._actions for o in action.option_strings]
        for token in extras:
            name = token.split("=", 1)[0]
            if name.startswith("-") and name not in options:
                close = close_match(name, [o for o in options if o.startswith("--")])
                self.error(
                    f"no such option: {name}" + (f" (did you mean {close}?)" if close else "")
                )
        self.error(f"unrecognized arguments: {' '.join(extras)}")


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def close_match(word: str, candidates: list[str]) -> str | None:
    """The candidate `word` most likely is a typo of (pip's "did you mean")."""
    import difflib

    # options compared without their dashes: "--" alone made --bogus "close" to --verbose
    bare = {c.lstrip("-"): c for c in candidates}
    found = difflib.get_close_matches(word.lstrip("-"), list(bare), n=1, cutoff=0.6)
    return bare[found[0]] if found else None


class PassthroughParser(SlapOSArgumentParser):
    """A command that hands its arguments to another program (`node supervisorctl`, `tail`).

    Its own options (--cfg, global options, -h) are picked out wherever they stand; every
    other word, options included (`slapos node tail -f slappart0:`), is passed through in
    order as `passthrough_dest`.
    """

    passthrough_dest = "args"

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        own: list[str] = []
        rest: list[str] = []
        tokens = list(args or [])
        with_value = {
            o for a in self._actions if a.nargs != 0 and a.option_strings for o in a.option_strings
        }
        flags = {o for a in self._actions if a.nargs == 0 for o in a.option_strings}
        i = 0
        while i < len(tokens):
            token = tokens[i]
            name = token.split("=", 1)[0]
            if name in with_value:
                own.append(token)
                if "=" not in token and i + 1 < len(tokens):
                    own.append(tokens[i + 1])
                    i += 1
            elif token in flags:
                own.append(token)
            else:
                rest.append(token)
            i += 1
        namespace, extras = super().parse_known_args(own, namespace)
        setattr(namespace, self.passthrough_dest, rest)
        return namespace, extras


def add_global_options(parser: argparse.ArgumentParser, *, root: bool = False) -> None:
    """-v/-q/--debug/--log-file/--log-color/--log-time, valid before or after the command.

    The root parser holds the defaults; every other parser re-adds the options with
    SUPPRESS defaults so that the innermost value wins and absent ones do not reset it.
    """
    d: Any = (lambda value: value) if root else (lambda value: argparse.SUPPRESS)
    group: Any = parser
    if not root:
        # Accepted at every depth, documented once in `slapos --help`.
        group = _HiddenHelp(parser)
    excl = group.add_mutually_exclusive_group()
    excl.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=d(0),
        help="Increase verbosity of output. Can be repeated.",
    )
    excl.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=d(False),
        help="Suppress output except warnings and errors.",
    )
    group.add_argument(
        "--debug", action="store_true", default=d(False), help="Show tracebacks on errors."
    )
    group.add_argument(
        "--log-file",
        "--logfile",
        "--log_file",
        dest="log_file",
        metavar="LOG_FILE",
        default=d(None),
        help="Specify a file to log output (default: console only)",
    )
    for flag, dest, const, default, text in (
        (
            "--log-color",
            "log_color",
            True,
            None,
            "Colored log output in console (stripped if redirected)",
        ),
        ("--no-log-color", "log_color", False, None, "Never colour the console log"),
        ("--log-time", "log_time", True, True, "Include timestamp in console log (the default)"),
        ("--no-log-time", "log_time", False, True, "Leave the timestamp out of console log lines"),
    ):
        group.add_argument(
            flag, dest=dest, action="store_const", const=const, default=d(default), help=text
        )


class _HiddenHelp:
    """Adds arguments with their help suppressed (global options on sub-commands)."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["help"] = argparse.SUPPRESS
        return self.parser.add_argument(*args, **kwargs)

    def add_mutually_exclusive_group(self) -> _HiddenHelp:
        # Not a real exclusive group: argparse's usage formatter asserts on groups whose
        # members are all hidden. The root parser enforces -v/-q exclusivity.
        return self


GLOBAL_EPILOG = (
    "Global options (-v, -q, --debug, --log-file ...) work here too: see 'slapos --help'."
)


def add_command(
    sub: SubParsers,
    root: SlapOSArgumentParser,
    words: tuple[str, ...],
    *,
    group: str,
    help: str,
    description: str | None = None,
    hidden: bool = False,
    passthrough: str | None = None,
) -> SlapOSArgumentParser:
    """Add one leaf command and record it for the grouped listing and completion.

    With `passthrough`, every word that is not one of the command's own options is
    collected, in order, into that attribute (see PassthroughParser).
    """
    parser_class = sub._parser_class
    if passthrough:
        sub._parser_class = type(
            "Passthrough", (PassthroughParser,), {"passthrough_dest": passthrough}
        )
    try:
        parser: SlapOSArgumentParser = sub.add_parser(
            words[-1],
            help=None if hidden else help,
            description=description or help,
            prog="slapos " + " ".join(words),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=GLOBAL_EPILOG,
        )
    finally:
        sub._parser_class = parser_class
    add_global_options(parser)
    parser.set_defaults(command_parser=parser)  # whose usage a leftover argument gets
    root.commands.append(CommandInfo(words, group, help, parser, hidden))
    return parser


class Commands:
    """Adds the commands of one family or area: the sub-command list they go in, the root
    that records them, their listing group and the configuration their --cfg names
    ("node": slapos.cfg, "client": slapos-client.cfg, None: no --cfg)."""

    def __init__(
        self,
        sub: SubParsers,
        root: SlapOSArgumentParser,
        *,
        group: str,
        cfg: str | None = None,
    ) -> None:
        self.sub, self.root, self.group, self.cfg = sub, root, group, cfg

    def add(
        self, words: tuple[str, ...], handler: Handler, help: str, **options: Any
    ) -> SlapOSArgumentParser:
        """One leaf command (add_command's `options`), its --cfg, bound to `handler`."""
        parser = add_command(self.sub, self.root, words, group=self.group, help=help, **options)
        if self.cfg is not None:
            parser.add_argument("--cfg", help=CFG_HELP[self.cfg])
        parser.set_defaults(handler=handler)
        return parser


def register_module(
    name: str,
    sub: SubParsers,
    root: SlapOSArgumentParser,
) -> None:
    """Import the family or area `name` and let it register its commands under `sub`.

    The commands it adds remember it, so that a test can check slapos.cli.registry.
    """
    import importlib

    start = len(root.commands)
    importlib.import_module(name).register(sub, root)
    for info in root.commands[start:]:
        info.defined_by = (name, *info.defined_by)


def add_group(
    sub: SubParsers,
    name: str,
    *,
    help: str,
    prefix: tuple[str, ...] = (),
) -> tuple[SlapOSArgumentParser, SubParsers]:
    """A command group (`node`, `service`, ...): a parser whose only argument is a sub-command."""
    words = (*prefix, name)
    parser: SlapOSArgumentParser = sub.add_parser(
        name, help=help, description=help, prog="slapos " + " ".join(words), epilog=GLOBAL_EPILOG
    )
    add_global_options(parser)
    child = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    parser.set_defaults(handler=group_help(parser), command_parser=parser)
    return parser, child


def group_help(parser: argparse.ArgumentParser) -> Handler:
    def show(args: argparse.Namespace, ctx: Context) -> int:
        ctx.stdout.write(parser.format_help())
        return 0

    return show


def add_format_option(
    parser: argparse.ArgumentParser,
    help: str = "output format: human-readable text (default) or JSON for scripts",
) -> None:
    """--format text|json, for the commands whose results scripts read."""
    parser.add_argument("--format", choices=("text", "json"), default="text", help=help)


def add_master_url_options(parser: argparse.ArgumentParser) -> None:
    """--master-url and --master-url-web, for the commands that get a certificate."""
    parser.add_argument(
        "--master-url",
        default="https://slap.vifib.com",
        help="URL of SlapOS Master REST API (default: %(default)s)",
    )
    parser.add_argument(
        "--master-url-web",
        default="https://panel.rapid.space",
        help="URL of SlapOS Master webservice to register certificates (default: %(default)s)",
    )


def partition_count(value: str) -> int:
    """A whole number, 0 or more: --partition-number, the seconds of the node commands."""
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {value!r}")
    return count


def ipv4_network(value: str) -> str:
    """--ipv4-local-network: an IPv4 network (as format reads it: host bits allowed)."""
    import ipaddress

    try:
        ipaddress.IPv4Network(value, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected an IPv4 network such as 10.0.0.0/16, got {value!r} ({exc})"
        ) from None
    return value


def add_partition_layout_options(
    parser: argparse.ArgumentParser,
    *,
    partitions: int,
    ipv4_default: str | None,
    ipv4_help: str,
    master_urls: bool = False,
) -> None:
    """--interface-name, --partition-number and --ipv4-local-network (with `master_urls`,
    --master-url and --master-url-web between, upstream's order), for the commands that write
    a node's configuration (configure local, node register)."""
    parser.add_argument(
        "--interface-name",
        default="lo",
        help="Primary network interface. IP of Partitions will be added to it "
        "(default: %(default)s)",
    )
    if master_urls:
        add_master_url_options(parser)
    parser.add_argument(
        "--partition-number",
        type=partition_count,
        default=partitions,
        help="Number of partitions to create in the SlapOS Node (default: %(default)s)",
    )
    parser.add_argument(
        "--ipv4-local-network",
        type=ipv4_network,
        default=ipv4_default,
        help="Subnetwork used to assign local IPv4 addresses. It should be a not used network "
        f"in order to avoid conflicts ({ipv4_help})",
    )


def add_message_option(parser: argparse.ArgumentParser) -> None:
    """-m/--message, what node bang and node boot tell the master."""
    parser.add_argument("-m", "--message", help="Message for bang")


def add_no_master_tls_verify(parser: argparse.ArgumentParser) -> None:
    """--no-master-tls-verify, for the commands that send a token to the master's web side."""
    parser.add_argument(
        "--no-master-tls-verify",
        dest="master_tls_verify",
        action="store_false",
        help="do not check the master's certificate (the token is sent anyway: only for a "
        "test master; upstream never checks it)",
    )


def str2bool(value: str) -> bool:
    """`True`/`False` as upstream's --alter_user and --alter_network take them."""
    text = value.strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")
