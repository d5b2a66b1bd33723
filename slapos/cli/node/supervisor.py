"""`slapos node supervisord|supervisorctl|status|start|stop|restart|tail`: the node's
supervisord, which runs every partition's services.
"""

from __future__ import annotations

import argparse
from typing import Any

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers
from slapos.cli.context import Context

ALIASES = ("status", "start", "stop", "restart", "tail")


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    node = Commands(sub, root, group="node", cfg="node")
    p = node.add(
        ("node", "supervisord"),
        run_supervisord,
        "launch, if not already running, supervisor daemon",
    )
    p.add_argument("-n", "--nodaemon", action="store_true", help="Do not daemonize supervisord")

    p = node.add(
        ("node", "supervisorctl"),
        run_supervisorctl,
        "open supervisor console, for process management",
        passthrough="supervisor_args",
    )
    p.add_argument("supervisor_args", nargs="*", help="parameters passed to supervisorctl")
    p.set_defaults(supervisor_action=None)

    for action in ALIASES:
        p = node.add(
            ("node", action),
            run_supervisorctl,
            f"alias for 'node supervisorctl {action}'",
            description=f"alias for 'node supervisorctl {action}'\n\n"
            "Name partitions and programs as supervisor does: 'slappart3:' is every program "
            "of slappart3, 'slappart3:apache' one program of it.",
            passthrough="supervisor_args",
        )
        p.add_argument("supervisor_args", nargs="*", help="parameters passed to supervisorctl")
        p.set_defaults(supervisor_action=action)


def status_default() -> dict[str, Any]:
    """Namespace defaults that make bare `slapos node` run `slapos node status`."""
    return {
        "handler": run_supervisorctl,
        "supervisor_action": "status",
        "supervisor_args": [],
        "cfg": None,
    }


def _instance_root_config(args: argparse.Namespace, ctx: Context) -> Any:
    return ctx.node_config(args, required=("instance_root",))


def _ensure_config(sv: Any, instance_root: Any) -> None:
    # Upstream rewrites the file with an empty watchdog here, which drops the watchdog that
    # `node instance` configured at the next reload; we keep an existing configuration.
    if not sv.SupervisordPaths.of(instance_root).config.exists():
        sv.write_supervisord_config(instance_root)


def run_supervisord(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.grid import supervisor as sv

    config = _instance_root_config(args, ctx)
    _ensure_config(sv, config.instance_root)
    sv.ensure_supervisord(config.instance_root, ctx.runner, nodaemon=bool(args.nodaemon))
    return 0


def run_supervisorctl(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.grid import supervisor as sv
    from slapos.system import exec_program

    config = _instance_root_config(args, ctx)
    ctx.require_root(config.root_check)
    if not config.forbid_supervisord_automatic_launch:
        _ensure_config(sv, config.instance_root)
        sv.ensure_supervisord(config.instance_root, ctx.runner)
    words = list(getattr(args, "supervisor_args", None) or [])
    if args.supervisor_action:
        words.insert(0, args.supervisor_action)
    return exec_program(sv.supervisorctl_argv(config.instance_root, words))
