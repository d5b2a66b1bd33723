"""`slapos node explain [PARTITION]`: the outcome of the last run, per partition.

The failing step (buildout part and command, promise and its message, supervisord program
and its exit status), the last lines of the log that matters, a hint for failures we
recognise and the command that reruns only that partition. Reads the node's records
(slapos.grid.explain); talks to no master.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers, add_format_option
from slapos.cli.context import Context
from slapos.wording import counted

if TYPE_CHECKING:
    from slapos.grid.explain import Explanation

STATUS_WORDS = {
    "processed": "processed",
    "skipped": "up to date",
    "failed": "FAILED",
    "promise-failed": "PROMISE FAILED",
}


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = Commands(sub, root, group="node", cfg="node").add(
        ("node", "explain"),
        run_explain,
        "explain the last run of each partition (or one): failing step, log, hint",
    )
    p.add_argument("partition", nargs="?", metavar="PARTITION", help="only this partition")
    p.add_argument(
        "--lines", type=int, default=30, help="log lines shown for a failure (default: 30)"
    )
    add_format_option(p)


def run_explain(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.cli.node.dry_run import use_colour
    from slapos.errors import ConfigError, NotFoundError, UsageError
    from slapos.grid.explain import explain, partitions_of

    if args.lines < 0:
        raise UsageError(f"--lines must be 0 or more, not {args.lines}")

    config = ctx.node_config(args)
    cfg = str(config.path.absolute())  # the rerun line works from any directory
    if not config.instance_root.is_dir():  # as node instance says it: not "no partition"
        raise ConfigError(f"instance root {config.instance_root} does not exist")
    if args.partition:
        path = config.instance_root / args.partition
        if not path.is_dir():
            raise NotFoundError(f"no partition {args.partition} in {config.instance_root}")
        paths = [path]
    else:
        paths = partitions_of(config.instance_root)
    command = ctx.slapos_command()
    found = [explain(p, cfg, args.lines, command) for p in paths]
    if args.format == "json":
        json.dump([e.to_dict() for e in found], ctx.stdout, indent=2, default=str)
        ctx.stdout.write("\n")
        return 0
    colour = use_colour(ctx.stdout, ctx.environ)
    blocks = [render(e, ctx.clock.time(), colour) for e in found]
    ctx.stdout.write("\n".join(blocks) if blocks else "no partition on this node\n")
    return 0


def when(at: float, now: float) -> str:
    from slapos.grid.instance_plan import duration

    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
    return f"{stamp} ({duration(max(now - at, 0))} ago)"


def render(e: Explanation, now: float, colour: bool = False) -> str:
    """One partition's explanation, as an operator reads it."""
    from slapos.cli.node.dry_run import paint

    r = e.record
    if r is None:
        return f"{e.partition_id}: {'; '.join(e.notes)}\n"
    label = e.partition_id + (f" [{r.software_type}]" if r.software_type else "")
    word = STATUS_WORDS.get(r.status, r.status)
    if e.failing and r.status == "skipped":
        word = "up to date but failing"
    head = f"{label} {r.requested_state}: {paint(word, 'fail' if e.failing else 'skip', colour)}"
    lines = [f"{head}, last run {when(r.at, now)}"]

    def field(name: str, text: str) -> None:
        lines.append(f"  {paint(name.ljust(9), 'key', colour)} {text}")

    step = r.step
    if step is not None:
        if step.kind == "buildout":
            part = f" part '{step.name}'" if step.name else ""
            field("step", f"buildout{part}: {step.message}")
            if step.command:
                field("command", step.command)
        elif step.kind == "promise":
            field("step", f"promise '{step.name}': {step.message}")
        elif step.kind == "supervisord":
            status = "" if step.exit_status is None else f", exit status {step.exit_status}"
            field("step", f"program {step.name} is {step.state}{status}")
        else:
            field("step", step.message)
    elif r.error:
        field("error", r.error.strip().splitlines()[0])
    if e.failing:
        if e.hint:
            field("hint", e.hint)
        if e.log_tail is not None:
            field("log", f"{e.log} (last {counted(len(e.log_tail), 'line')})")
            lines.extend(f"    | {line}" for line in e.log_tail)
        elif e.log:
            field("log", f"{e.log} (cannot be read here)")
        field("rerun", e.rerun)
    return "\n".join(lines) + "\n"
