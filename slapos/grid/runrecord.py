"""What the node remembers of each partition between runs, in the partition's `.slapgrid/`.

* `applied.json`: what the last processing that got through buildout applied (requested
  state, software release, parameters). The planner compares the master's current values
  with it to say *which* parameters changed, old -> new; upstream only compares a timestamp.
* `last-run.json`: the outcome of the last `node instance` run that looked at the
  partition: processed, skipped or failed, the failing step (buildout part and command,
  promise and its message, supervisord program and its exit status) and the log to read.
  `slapos node explain` prints it.

Both are small JSON files written atomically (temporary file, then `os.replace`) with mode
0600: parameters can hold secrets. Reading never fails: a missing, unreadable or damaged
file is "no record".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

APPLIED = "applied.json"
LAST_RUN = "last-run.json"
VERSION = 1


def write_json(path: Path, data: dict[str, Any], mode: int = 0o600) -> None:
    """Write `data` to `path` atomically, with `mode`; creates the parent directory."""
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.debug("ignoring unreadable %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Applied:
    """What a processing applied to a partition."""

    requested_state: str
    software_url: str | None
    software_type: str
    parameters: dict[str, Any]
    timestamp: str | None = None
    at: float = 0.0

    @classmethod
    def read(cls, slapgrid: Path) -> Applied | None:
        data = read_json(slapgrid / APPLIED)
        if data is None or not isinstance(data.get("parameters"), dict):
            return None
        return cls(
            requested_state=str(data.get("requested_state") or ""),
            software_url=data.get("software_url"),
            software_type=str(data.get("software_type") or ""),
            parameters=data["parameters"],
            timestamp=data.get("timestamp"),
            at=float(data.get("at") or 0),
        )

    def write(self, slapgrid: Path) -> None:
        write_json(slapgrid / APPLIED, {"version": VERSION, **asdict(self)})


@dataclass(frozen=True)
class Step:
    """The step that failed: `kind` is buildout, promise, supervisord, partition or master."""

    kind: str
    name: str = ""  # buildout part, promise name, supervisord program
    command: str = ""  # the buildout command line
    message: str = ""
    exit_status: int | None = None
    state: str = ""  # supervisord state of the program


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one run for one partition."""

    partition_id: str
    status: str  # processed | skipped | failed | promise-failed
    at: float
    seconds: float = 0.0
    requested_state: str = ""
    software_url: str | None = None
    software_type: str = ""
    action: str = ""  # the plan's action
    reasons: list[str] = field(default_factory=list)  # the plan's reason codes
    services: str = ""  # what the run did to the services
    master: list[str] = field(default_factory=list)  # what it told the master
    error: str = ""
    step: Step | None = None
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        step = data.get("step")
        return cls(
            partition_id=str(data.get("partition_id") or ""),
            status=str(data.get("status") or ""),
            at=float(data.get("at") or 0),
            seconds=float(data.get("seconds") or 0),
            requested_state=str(data.get("requested_state") or ""),
            software_url=data.get("software_url"),
            software_type=str(data.get("software_type") or ""),
            action=str(data.get("action") or ""),
            reasons=[str(r) for r in data.get("reasons") or []],
            services=str(data.get("services") or ""),
            master=[str(m) for m in data.get("master") or []],
            error=str(data.get("error") or ""),
            step=Step(**{k: v for k, v in step.items() if k in Step.__dataclass_fields__})
            if isinstance(step, dict)
            else None,
            log=str(data.get("log") or ""),
        )

    @classmethod
    def read(cls, slapgrid: Path) -> RunRecord | None:
        data = read_json(slapgrid / LAST_RUN)
        return None if data is None else cls.from_dict(data)

    def write(self, slapgrid: Path) -> None:
        write_json(slapgrid / LAST_RUN, self.to_dict())


# ---- finding the failing step in what failed ---------------------------------------------

_WHILE_PART = re.compile(r"^\s+(?:Installing|Updating|Uninstalling|Getting section)\s+(\S+?)\.?$")
_PROMISE = re.compile(r"^Promise '(.+?)' failed with output: (.*)$", re.DOTALL)


def buildout_part(output: str) -> str:
    """The part zc.buildout names under `While:` when it fails ("" when it names none)."""
    lines = output.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "While:":
            for line in lines[i + 1 :]:
                match = _WHILE_PART.match(line)
                if match:
                    return match.group(1)
                if not line.startswith(" "):
                    break
    return ""


def promise_step(message: str) -> Step:
    match = _PROMISE.match(message.strip())
    if match is None:
        return Step("promise", message=message.strip())
    return Step("promise", name=match.group(1), message=match.group(2).strip())


def failing_step(exc: BaseException, message: str) -> Step:
    """The step a processing error names: a buildout part and command, or the partition."""
    from slapos.grid.buildout import BuildoutFailed

    if isinstance(exc, BuildoutFailed):
        return Step(
            "buildout",
            name=buildout_part(exc.output),
            command=" ".join(exc.completed.argv),
            message=exc.reason,
            exit_status=exc.completed.returncode,
        )
    return Step("partition", message=message)
