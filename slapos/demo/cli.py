"""`python -m slapos.demo [DIR] [--stop | --destroy]`: its command line and exit codes.

DIR may come before or after the options. dev.sh passes hidden options: how the user
started the demo (for the hints printed), where a relative DIR is (the caller's directory:
dev.sh runs the demo from elsewhere), the default DIR, and the virtualenv it made for the
demo's Python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slapos.errors import ExitCode, SlapOSError

DEFAULT_DIR = "demo"


def build_parser(prog: str) -> argparse.ArgumentParser:
    import slapos.demo

    parser = argparse.ArgumentParser(
        prog=prog,
        description=slapos.demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", nargs="*", metavar="DIR", help="where (default: ./demo)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--stop",
        action="store_true",
        help="stop the demo's processes (supervisord, the local master), keep DIR",
    )
    action.add_argument(
        "--destroy",
        action="store_true",
        help="stop everything, delete the users the demo created, remove DIR",
    )
    parser.add_argument(
        "--user-base-name",
        default="slapuser",
        help="as root: partition N runs as user USER_BASE_NAMEN (default: %(default)s)",
    )
    parser.add_argument(
        "--software-user",
        default="slapsoft",
        help="as root: the user that builds the release (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=None,
        help="the local master's port for a new DIR (default: 8080 when free, else any free "
        "port); a DIR set up before keeps its own",
    )
    # from dev.sh: how the user started us (for the hints printed at the end), where a
    # relative DIR is, the default DIR, the virtualenv made for the demo's Python
    parser.add_argument("--invoked-as", default="", help=argparse.SUPPRESS)
    parser.add_argument("--relative-to", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--default-dir", default=DEFAULT_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--demo-venv", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number (1 to 65535), got {text!r}")
    return int(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options, with `root`: DIR as an absolute path. Exits 2 on a usage error."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--invoked-as", default="")
    prog = first.parse_known_args(argv)[0].invoked_as or "python -m slapos.demo"
    parser = build_parser(prog)
    args = parser.parse_intermixed_args(argv)
    if len(args.dir) > 1:
        parser.error(f"one DIR only, got {len(args.dir)}: {' '.join(args.dir)}")
    where = args.relative_to or Path.cwd()
    args.root = where / (args.dir[0] if args.dir else args.default_dir)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help (0), or a usage error argparse printed (2)
        return ExitCode.OK if not exc.code else ExitCode.USAGE
    try:
        if args.destroy:
            from slapos.demo.teardown import destroy
            from slapos.system import SubprocessRunner

            destroy(args.root, sys.stdout, SubprocessRunner(), args.demo_venv)
        elif args.stop:
            from slapos.demo.teardown import stop

            stop(args.root, sys.stdout)
        else:
            from slapos.demo.deploy import run
            from slapos.demo.layout import Users

            users = Users(args.user_base_name, args.software_user)
            run(args.root, sys.stdout, users, args.invoked_as, args.demo_venv, args.port)
    except SlapOSError as exc:
        action = "--destroy " if args.destroy else "--stop " if args.stop else ""
        sys.stderr.write(f"demo {action}failed: {exc}\n")
        return exc.exit_code
    except OSError as exc:
        sys.stderr.write(f"demo failed: {exc}\n")
        return ExitCode.FAILURE
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    return ExitCode.OK
