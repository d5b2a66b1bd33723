"""`slapos explain INSTANCE_TITLE`: why an instance tree is (not) working, from the master.

The tree, each instance's computer and partition, requested vs reported state, the last
error the node reported (message, when) and the connection parameters, the first failing
instance highlighted. Works against any master (slapos.slap.explain); one that keeps no
statuses is named as such.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers, add_format_option
from slapos.cli.context import Context

if TYPE_CHECKING:
    from slapos.slap.explain import InstanceState, TreeExplanation


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = Commands(sub, root, group="client", cfg="client").add(
        ("explain",),
        run_explain,
        "explain an instance tree: where each instance runs, its state, its last error",
    )
    p.add_argument("title", metavar="INSTANCE_TITLE", help="title of the tree's root instance")
    add_format_option(p)


def run_explain(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.cli.client import connect
    from slapos.cli.node.dry_run import use_colour
    from slapos.slap.explain import explain_tree

    connection = connect(ctx.client_config(args))
    tree = explain_tree(connection._connection_helper, args.title, ctx.slapos_command())
    if args.format == "json":
        json.dump(tree.to_dict(), ctx.stdout, indent=2, sort_keys=True)
        ctx.stdout.write("\n")
    else:
        colour = use_colour(ctx.stdout, ctx.environ)
        ctx.stdout.write(render_tree(tree, colour, ctx.slapos_command()))
    return 0


def _where(i: InstanceState) -> str:
    if not i.partition_id:
        return "not allocated yet"
    return f"{i.partition_id} on {i.computer_guid}"


def _reported(i: InstanceState) -> str:
    if i.reported_state is None:
        return "reported: nothing yet"
    when = f" at {i.reported_at}" if i.reported_at else ""
    return f"reported {i.reported_state}{when}"


def render_instance(i: InstanceState, first: bool, colour: bool) -> list[str]:
    from slapos.cli.node.dry_run import paint

    kind = " (shared)" if i.shared else ""
    head = f"{i.title}{kind}  [{_where(i)}]  requested {i.requested_state}, {_reported(i)}"
    if i.failing:
        head = paint(head, "fail", colour)
    lines = [("! " if first else "  ") + head]

    def field(name: str, text: str) -> None:
        lines.append(f"      {paint(name.ljust(11), 'key', colour)} {text}")

    if i.software_type or i.software_url:
        field("software", f"{i.software_url} ({i.software_type or 'default'})")
    if i.failing and i.message:
        field("error", i.message)
    elif i.last_error:
        at = f" at {i.last_error_at}" if i.last_error_at else ""
        field("last error", f"{i.last_error}{at} (reported fine since)")
    for key, value in sorted(i.connection_parameters.items()):
        text = value if isinstance(value, str) else json.dumps(value)
        field("connection" if key == min(i.connection_parameters) else "", f"{key} = {text}")
    return lines


def render_tree(tree: TreeExplanation, colour: bool = False, command: str = "slapos") -> str:
    first = tree.first_failing
    count = len(tree.instances)
    counted = f"{count} instance{'' if count == 1 else 's'}"
    lines = [f"instance tree '{tree.title}' ({counted}, {tree.master_url})"]
    for i in tree.instances:
        lines.extend(render_instance(i, i is first, colour))
    lines.extend(f"note: {note}" for note in tree.notes)
    if first is not None:
        lines.append(
            f"first failing instance: {first.title} ({_where(first)}); on that node, "
            f"'{command} node explain {first.partition_id or ''}'".rstrip()
        )
    elif tree.statuses_kept:
        lines.append("no instance reports an error")
    return "\n".join(lines) + "\n"
