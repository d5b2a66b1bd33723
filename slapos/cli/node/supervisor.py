"""`slapos node supervisord|supervisorctl|status|start|stop|restart|tail`: the node's
supervisord, which runs every partition's services.
"""

from __future__ import annotations

import argparse
from typing import Any

from slapos.cli._common import SlapOSArgumentParser, add_command, add_node_cfg, not_implemented

ALIASES = ("status", "start", "stop", "restart", "tail")


def register(sub: argparse._SubParsersAction, root: SlapOSArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_command(
        sub,
        root,
        ("node", "supervisord"),
        group="node",
        help="launch, if not already running, supervisor daemon",
    )
    add_node_cfg(p)
    p.add_argument("-n", "--nodaemon", action="store_true", help="Do not daemonize supervisord")
    p.set_defaults(handler=not_implemented("node supervisord"))

    p = add_command(
        sub,
        root,
        ("node", "supervisorctl"),
        group="node",
        help="open supervisor console, for process management",
        passthrough="supervisor_args",
    )
    add_node_cfg(p)
    p.add_argument("supervisor_args", nargs="*", help="parameters passed to supervisorctl")
    p.set_defaults(handler=not_implemented("node supervisorctl"), supervisor_action=None)

    for action in ALIASES:
        p = add_command(
            sub,
            root,
            ("node", action),
            group="node",
            help=f"alias for 'node supervisorctl {action}'",
            description=f"alias for 'node supervisorctl {action}'\n\n"
            "Name partitions and programs as supervisor does: 'slappart3:' is every program "
            "of slappart3, 'slappart3:apache' one program of it.",
            passthrough="supervisor_args",
        )
        add_node_cfg(p)
        p.add_argument(
            "supervisor_args", nargs="*", help="parameters passed to supervisorctl"
        )
        p.set_defaults(handler=not_implemented(f"node {action}"), supervisor_action=action)


def status_default() -> dict[str, Any]:
    """Namespace defaults that make bare `slapos node` run `slapos node status`."""
    return {
        "handler": not_implemented("node status"),
        "supervisor_action": "status",
        "supervisor_args": [],
        "cfg": None,
    }
