"""The planner of `slapos node instance`: for each partition, process or skip, and why.

`slapos.grid.instance_observe.observe()` reads what the master says and what is on disk,
changing nothing. `plan_partition()` is pure: from the observation and the run's options it
decides what a run does to the partition (its action), why (the reasons), what happens to
its services and what the master is told. The real run executes that plan
(slapos.grid.instance), and `node instance --dry-run` prints it: the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from slapos.grid.runrecord import Applied, RunRecord

STARTED, STOPPED, DESTROYED = "started", "stopped", "destroyed"

#: Actions. `free`: nothing deployed there; `fail`: the run cannot even start on it;
#: `unknown`: a dry run by a user who cannot read the partition cannot tell.
PROCESS, SKIP, FREE, FAIL, UNKNOWN = "process", "skip", "free", "fail", "unknown"

#: Parameter names whose values are never shown.
SECRET = re.compile(r"pass|secret|token|key|private|credential|auth|cookie|salt", re.IGNORECASE)
#: Parameters the master sets on every instance and that say nothing about a change.
NOISE = frozenset({"timestamp"})
MAX_VALUE = 60

#: What a run tells the master (PartitionPlan.master, RunRecord.master), and in words.
ERROR, REPORT_STARTED, REPORT_STOPPED = "error", "started", "stopped"
CONNECTION, ANOMALY = "connection-parameters", "anomaly-check"
MASTER_WORDS = {
    ERROR: "report the error",
    REPORT_STARTED: "report started (once its promises pass)",
    REPORT_STOPPED: "report stopped",
    CONNECTION: "connection parameters re-published by the release's buildout",
    ANOMALY: "promises checked (anomaly mode); their status reported if it changed",
}


@dataclass(frozen=True)
class Options:
    """The run options that change decisions (a subset of InstanceOptions)."""

    force: bool = False
    force_stop: bool = False


@dataclass(frozen=True)
class Observation:
    """What the node sees of one partition, read without changing anything."""

    partition_id: str
    requested_state: str
    software_url: str | None
    software_type: str
    parameters: Mapping[str, Any]
    directory_exists: bool
    software_installed: bool = True
    local_timestamp: str | None = None  # content of .timestamp
    local_timestamp_mtime: float | None = None
    periodicity: int = 86400
    applied: Applied | None = None
    last_run: RunRecord | None = None
    #: program -> supervisord state; None when supervisord could not be asked
    services: Mapping[str, str] | None = None
    dirty_free: bool = False  # a free partition still holds slapgrid state
    readable: bool = True  # False: this user cannot read the partition (a dry run)
    #: names of the connection parameters the master holds now (values are not shown)
    connection_keys: tuple[str, ...] = ()

    @property
    def free(self) -> bool:
        return self.requested_state == DESTROYED and self.software_url is None

    @property
    def timestamp(self) -> str | None:
        value = self.parameters.get("timestamp")
        return None if value is None else str(value)


@dataclass(frozen=True)
class Change:
    key: str
    old: str | None  # None: absent
    new: str | None


@dataclass(frozen=True)
class Reason:
    code: str
    text: str
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True)
class PartitionPlan:
    partition_id: str
    action: str
    requested_state: str = ""
    software_type: str = ""
    software_url: str | None = None
    reasons: tuple[Reason, ...] = ()
    #: start | stop | keep | none
    services: str = "none"
    services_detail: str = ""
    #: the calls the run makes to the master, in words
    master: tuple[str, ...] = ()
    #: skipped started partitions: promises run in anomaly mode
    check_promises: bool = False
    #: a failure the node can predict (release not installed...)
    expected_failure: str = ""
    #: connection parameters published now (names), re-published by buildout
    connection_keys: tuple[str, ...] = ()

    @property
    def changes_something(self) -> bool:
        return self.action in (PROCESS, FAIL, UNKNOWN) or (
            self.action == FREE and bool(self.reasons)
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changes_something"] = self.changes_something
        return data


# ---- deciding ------------------------------------------------------------------------


def freshness(obs: Observation, now: float) -> Reason | None:
    """None when the partition is up to date (upstream's rule, node.md §5.4), else why not."""
    timestamp = obs.timestamp
    if timestamp is None:
        return Reason("no-timestamp", "the master gives no timestamp: processed every run")
    if obs.periodicity == 0:
        return Reason("periodicity", "periodicity is 0: processed every run")
    if obs.local_timestamp is None or obs.local_timestamp_mtime is None:
        last = obs.last_run
        if last is not None and last.status == "promise-failed":
            return Reason("promise-failed", f"a promise failed last run: {first_line(last.error)}")
        if last is not None and last.status == "failed":
            return Reason("last-run-failed", f"last run failed: {first_line(last.error)}")
        if obs.applied is None:
            return Reason("never-processed", "never processed on this node")
        return Reason("not-processed", "no successful run recorded (.timestamp missing)")
    if obs.local_timestamp != timestamp:
        return Reason("changed", "the master's timestamp changed")
    if obs.periodicity > 0 and now > obs.local_timestamp_mtime + obs.periodicity:
        age = now - obs.local_timestamp_mtime
        return Reason(
            "periodicity-due",
            f"periodicity: last processed {duration(age)} ago, "
            f"processed at least every {duration(obs.periodicity)}",
        )
    return None


def what_changed(obs: Observation) -> list[Reason]:
    """Differences between what the last processing applied and what the master asks now."""
    applied = obs.applied
    if applied is None:
        return []
    reasons = []
    if applied.software_url != obs.software_url:
        reasons.append(
            Reason(
                "software-release",
                f"software release changed: {applied.software_url} -> {obs.software_url}",
            )
        )
    if applied.requested_state != obs.requested_state:
        reasons.append(
            Reason(
                "state",
                f"requested state changed: {applied.requested_state} -> {obs.requested_state}",
            )
        )
    changes = diff_parameters(applied.parameters, obs.parameters)
    if changes:
        keys = ", ".join(c.key for c in changes)
        reasons.append(Reason("parameters", f"parameters changed: {keys}", tuple(changes)))
    return reasons


def plan_partition(obs: Observation, options: Options, now: float) -> PartitionPlan:
    """What a run does to this partition, and why."""
    base = PartitionPlan(
        partition_id=obs.partition_id,
        action=SKIP,
        requested_state=obs.requested_state,
        software_type=obs.software_type,
        software_url=obs.software_url,
        connection_keys=obs.connection_keys,
    )
    if obs.free:
        clean = Reason("clean", "free: its slapgrid state is removed")
        return replace(base, action=FREE, reasons=(clean,) if obs.dirty_free else ())
    if not obs.directory_exists:
        return replace(
            base,
            action=FAIL,
            reasons=(
                Reason("no-directory", "partition directory missing (run 'slapos node format')"),
            ),
            master=(ERROR,),
        )
    if not obs.readable:
        return replace(
            base,
            action=UNKNOWN,
            reasons=(
                Reason(
                    "unreadable",
                    "this user cannot read the partition: run the dry run as root "
                    "(or as a member of the partitions' group)",
                ),
            ),
        )
    state = obs.requested_state
    forced: list[Reason] = []
    stale = freshness(obs, now)
    if options.force_stop and state == STARTED:
        forced.append(Reason("force-stop", "--force-stop"))
    if options.force:
        forced.append(Reason("force", "--force"))
    if stale is None and not forced:
        return _skip(obs, base)
    reasons = [*forced, *([stale] if stale is not None else []), *what_changed(obs)]
    if stale is not None and stale.code == "changed" and len(reasons) > 1:
        reasons.remove(stale)  # the detailed reasons say it better
    elif stale is not None and stale.code == "changed" and obs.applied is not None:
        reasons[reasons.index(stale)] = Reason(
            "changed",
            "the master's timestamp changed, nothing else did (a bang, or a re-request)",
        )
    services, master = _effects(obs, options)
    expected = ""
    if not obs.software_installed and state != DESTROYED:
        expected = f"software release {obs.software_url} is not installed on this node"
        master = (ERROR,)
        services = ("stop", "") if state == STOPPED else ("none", "")
    return replace(
        base,
        action=PROCESS,
        reasons=tuple(reasons),
        services=services[0],
        services_detail=services[1],
        master=master,
        expected_failure=expected,
    )


def _programs(obs: Observation) -> str:
    if obs.services is None:
        return "program states unknown: supervisord not reachable"
    if not obs.services:
        return "none running"
    return ", ".join(f"{name} {state}" for name, state in sorted(obs.services.items()))


def _skip(obs: Observation, base: PartitionPlan) -> PartitionPlan:
    reason = Reason("up-to-date", "up to date")
    if obs.requested_state != STARTED:
        return replace(
            base, action=SKIP, reasons=(reason,), services="keep", services_detail=_programs(obs)
        )
    detail = _programs(obs)
    down = sorted(n for n, s in (obs.services or {}).items() if s not in ("RUNNING", "STARTING"))
    if down:
        detail += f"; this run does not restart {', '.join(down)}"
    reasons = [reason]
    last = obs.last_run
    if last is not None and last.status == "skipped" and last.step is not None:
        # up to date, yet the last run saw something wrong: say it (node explain tells more)
        step = last.step
        what = f"{step.kind} {step.name}".strip()
        said = first_line(step.message) or step.state
        reasons.append(Reason("still-failing", f"last run: {what}: {said}".rstrip(": ")))
    return replace(
        base,
        action=SKIP,
        reasons=tuple(reasons),
        services="keep",
        services_detail=detail,
        master=(ANOMALY,),
        check_promises=True,
    )


def _effects(obs: Observation, options: Options) -> tuple[tuple[str, str], tuple[str, ...]]:
    state = obs.requested_state
    running = sorted(
        n for n, s in (obs.services or {}).items() if s in ("RUNNING", "STARTING", "BACKOFF")
    )
    if state == STARTED and options.force_stop:
        return ("stop", _programs(obs)), (CONNECTION,)
    if state == STARTED:
        if obs.services is None:
            detail = "programs started; running ones restarted if their configuration changed"
        elif running:
            detail = f"running: {', '.join(running)}; restarted if their configuration changed"
        else:
            detail = "programs of etc/service and etc/run started"
        return ("start", detail), (CONNECTION, REPORT_STARTED)
    if state == STOPPED:
        return ("stop", _programs(obs)), (CONNECTION, REPORT_STOPPED)
    detail = _programs(obs) + "; 'slapos node report' then destroys the partition"
    return ("stop", detail), (REPORT_STOPPED,)


# ---- parameters ----------------------------------------------------------------------


def _flatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters, with the serialised JSON of `_` (the usual SlapOS form) opened up."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if key in NOISE:
            continue
        if key == "_" and isinstance(value, str):
            try:
                inner = json.loads(value)
            except ValueError:
                inner = None
            if isinstance(inner, dict):
                for k, v in inner.items():
                    flat[f"_.{k}"] = v
                continue
        flat[key] = value
    return flat


def shown(key: str, value: Any) -> str | None:
    """A value as the plan shows it: secrets masked, long values shortened."""
    if value is None:
        return None
    if SECRET.search(key.split(".")[-1]):
        return "***"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def _comparable(value: Any) -> Any:
    """Values as JSON keeps them: the tuples of a fresh answer equal the lists of a record."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def diff_parameters(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    before, after = _flatten(old), _flatten(new)
    changes = []
    for key in sorted(set(before) | set(after)):
        a, b = _comparable(before.get(key)), _comparable(after.get(key))
        if a == b:
            continue
        changes.append(Change(key, shown(key, a), shown(key, b)))
    return changes


# ---- small words ---------------------------------------------------------------------


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


@dataclass
class NodePlan:
    """The plan of one whole run."""

    computer_id: str
    master_url: str
    partitions: list[PartitionPlan] = field(default_factory=list)
    offline: str = ""  # why the master could not be read: a real run goes offline
    supervisord: str = ""  # what happens to supervisord itself

    @property
    def changes_something(self) -> bool:
        return bool(self.offline) or any(p.changes_something for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "computer_id": self.computer_id,
            "master_url": self.master_url,
            "offline": self.offline,
            "supervisord": self.supervisord,
            "changes_something": self.changes_something,
            "partitions": [p.to_dict() for p in self.partitions],
        }
