"""`slapos node instance --dry-run`: print the plan of a run, change nothing.

The plan comes from the planner the real run executes (slapos.grid.instance_plan), so it
says what the run would do. Exit 0 when a run would change nothing, 4 (CHANGES_PENDING)
when it would, as `terraform plan -detailed-exitcode` does.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, TextIO

from slapos.cli._common import add_format_option
from slapos.cli.context import Context
from slapos.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from pathlib import Path

    from slapos.config import NodeConfig
    from slapos.grid.instance_io import InstanceOptions
    from slapos.grid.instance_plan import NodePlan, PartitionPlan
    from slapos.grid.report import ReportPlan
    from slapos.grid.software import SoftwareDecision, SoftwareOptions

COLOURS = {
    "process": "\033[1;33m",
    "fail": "\033[1;31m",
    "skip": "\033[0;32m",
    "free": "\033[2m",
    "key": "\033[1m",
}
RESET = "\033[0m"


def add_dry_run_options(parser: argparse.ArgumentParser) -> None:
    """--dry-run and its --format, for node software, instance and report."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Print what a run would do and why, change nothing (exit 0: nothing to do, "
        "4: a run would change something)",
    )
    add_format_option(parser, "--dry-run output: human-readable text (default) or JSON for scripts")


def use_colour(stream: TextIO, environ: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(
        isatty is not None
        and isatty()
        and "NO_COLOR" not in environ
        and environ.get("TERM") != "dumb"
    )


def paint(text: str, what: str, colour: bool) -> str:
    return f"{COLOURS[what]}{text}{RESET}" if colour and what in COLOURS else text


def run_instance_dry_run(args: argparse.Namespace, ctx: Context, options: InstanceOptions) -> int:
    """No pid file, no delay, no root needed: nothing here writes."""
    from slapos.cli.node._grid_options import slapgrid_overrides
    from slapos.grid.instance import InstanceEngine
    from slapos.grid.instance_io import Node

    config = ctx.node_config(args, slapgrid_overrides(args))
    check_root(config.instance_root, "instance_root")
    node = Node(config, ctx.runner, ctx.clock, ctx.environ, ctx.is_root)
    result = InstanceEngine(node, options).plan_run()
    if args.format == "json":
        json.dump(result.to_dict(), ctx.stdout, indent=2, sort_keys=True)
        ctx.stdout.write("\n")
    else:
        ctx.stdout.write(render_node_plan(result, use_colour(ctx.stdout, ctx.environ)))
    return ExitCode.CHANGES_PENDING if result.changes_something else ExitCode.OK


def check_root(root: Path, key: str) -> None:
    """A missing root, where any real run fails, fails the plan too (same line, same exit
    code): a plan ending in "exit 4" must not hide it. A root this user may not write is
    fine: the plan is for anyone to read (a real run's user is checked by that run)."""
    if not root.is_dir():
        raise ConfigError(
            f"{key} {root} does not exist or is not a directory (create it, or fix [slapos] "
            f"{key}): a real run fails there too"
        )


def render_node_plan(result: NodePlan, colour: bool = False) -> str:
    """The plan as an operator reads it in a terminal."""
    lines = [f"plan of 'slapos node instance' on {result.computer_id} ({result.master_url})"]
    if result.supervisord:
        lines.append(f"supervisord: {result.supervisord}")
    if result.offline:
        lines.append(paint(f"offline: {result.offline}", "fail", colour))
    for p in result.partitions:
        if p.action != "free" or p.reasons:
            lines.extend(render_partition(p, colour))
    free = [p.partition_id for p in result.partitions if p.action == "free" and not p.reasons]
    if free:
        lines.extend(["", paint(f"free: {', '.join(free)}", "free", colour)])
    counts: dict[str, int] = {}
    for p in result.partitions:
        counts[p.action] = counts.get(p.action, 0) + 1
    words = {
        "process": "to process",
        "skip": "up to date",
        "free": "free",
        "fail": "failing",
        "unknown": "unreadable here",
    }
    summary = ", ".join(f"{counts[a]} {w}" for a, w in words.items() if counts.get(a))
    verdict = (
        "a real run would change something (exit 4)"
        if result.changes_something
        else "a real run would change nothing (exit 0)"
    )
    lines.append("")
    lines.append(f"{summary or 'no partition'}: {verdict}")
    return "\n".join(lines) + "\n"


def render_partition(p: PartitionPlan, colour: bool = False) -> list[str]:
    from slapos.grid.instance_plan import MASTER_WORDS

    label = p.partition_id
    if p.action == "free":
        extra = f" ({p.reasons[0].text})" if p.reasons else ""
        return ["", paint(f"{label}: free", "free", colour) + extra]
    if p.software_type:
        label += f" [{p.software_type}]"
    colour_of = "fail" if p.action == "unknown" else p.action
    head = f"{label} {p.requested_state}: {paint(p.action, colour_of, colour)}"
    lines = ["", head]

    def field(name: str, text: str) -> None:
        lines.append(f"  {paint(name.ljust(9), 'key', colour)} {text}")

    for i, reason in enumerate(p.reasons):
        field("why" if i == 0 else "", reason.text)
        for change in reason.changes:
            old = "(absent)" if change.old is None else repr(change.old)
            new = "(absent)" if change.new is None else repr(change.new)
            lines.append(f"              {change.key}: {old} -> {new}")
    if p.expected_failure:
        field("fails", paint(p.expected_failure, "fail", colour))
    if p.services != "none" or p.services_detail:
        detail = f" ({p.services_detail})" if p.services_detail else ""
        field("services", f"{p.services}{detail}")
    for i, code in enumerate(p.master):
        words = MASTER_WORDS.get(code, code)
        if code == "connection-parameters" and p.connection_keys:
            words += f" (now: {', '.join(p.connection_keys)})"
        field("master" if i == 0 else "", words)
    return lines


# ---- node software --dry-run ------------------------------------------------------------


def run_software_dry_run(
    args: argparse.Namespace, ctx: Context, config: NodeConfig, options: SoftwareOptions
) -> int:
    """The releases a `node software` run would build, keep or remove; writes nothing."""
    from slapos.grid.software import SlapMaster, SoftwareEngine

    check_root(config.software_root, "software_root")
    engine = SoftwareEngine(config, SlapMaster(config), ctx.runner, ctx.clock, ctx.environ)
    decisions, garbage = engine.plan(options)
    changes = bool(garbage) or any(d.changes_something for d in decisions)
    if args.format == "json":
        document = {
            "computer_id": config.computer_id,
            "master_url": config.master_url,
            "changes_something": changes,
            "software_releases": [d.to_dict() for d in decisions],
            "garbage_collected": [str(p) for p in garbage],
        }
        json.dump(document, ctx.stdout, indent=2, sort_keys=True)
        ctx.stdout.write("\n")
    else:
        colour = use_colour(ctx.stdout, ctx.environ)
        ctx.stdout.write(render_software_plan(config, decisions, garbage, colour))
    return ExitCode.CHANGES_PENDING if changes else ExitCode.OK


def render_software_plan(
    config: NodeConfig, decisions: list[SoftwareDecision], garbage: list[Path], colour: bool
) -> str:
    lines = [f"plan of 'slapos node software' on {config.computer_id} ({config.master_url})"]
    kind = {"install": "process", "remove": "fail", "up-to-date": "skip"}
    for d in decisions:
        word = paint(d.action, kind.get(d.action, "free"), colour)
        lines.append(f"  {word}: {d.url}")
        lines.append(f"      {d.reason} ({d.path})")
    for path in garbage:
        lines.append(f"  {paint('remove', 'fail', colour)}: {path} (garbage: supplied no more)")
    changes = bool(garbage) or any(d.changes_something for d in decisions)
    lines.append("")
    lines.append(
        "a real run would change something (exit 4)"
        if changes
        else "a real run would change nothing (exit 0)"
    )
    return "\n".join(lines) + "\n"


# ---- node report --dry-run --------------------------------------------------------------


def run_report_dry_run(args: argparse.Namespace, ctx: Context) -> int:
    """What a `node report` run would do; writes nothing."""
    from slapos.cli.node._grid_options import slapgrid_overrides
    from slapos.grid.instance_io import Node
    from slapos.grid.report import ReportEngine

    config = ctx.node_config(args, slapgrid_overrides(args))
    check_root(config.instance_root, "instance_root")
    node = Node(config, ctx.runner, ctx.clock, ctx.environ, ctx.is_root)
    result = ReportEngine(node).plan()
    if args.format == "json":
        json.dump(result.to_dict(), ctx.stdout, indent=2, sort_keys=True)
        ctx.stdout.write("\n")
    else:
        ctx.stdout.write(render_report_plan(config, result, use_colour(ctx.stdout, ctx.environ)))
    return ExitCode.CHANGES_PENDING if result.changes_something else ExitCode.OK


def render_report_plan(config: NodeConfig, result: ReportPlan, colour: bool) -> str:
    lines = [f"plan of 'slapos node report' on {config.computer_id} ({config.master_url})"]
    for pid, scripts in result.report_scripts.items():
        lines.append(f"  {paint('run', 'process', colour)}: {pid}: {', '.join(scripts)}")
    for pid, why in result.destroy.items():
        lines.append(f"  {paint('destroy', 'fail', colour)}: {pid}: {why}")
    for pid, why in result.kept.items():
        lines.append(f"  {paint('keep', 'skip', colour)}: {pid}: {why}")
    if not (result.report_scripts or result.destroy or result.kept):
        lines.append("  nothing to report or destroy")
    lines.append("")
    lines.append(
        "a real run would change something (exit 4)"
        if result.changes_something
        else "a real run would change nothing (exit 0)"
    )
    return "\n".join(lines) + "\n"
