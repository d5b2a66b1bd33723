"""`slapos node explain`: what the last run did to each partition, from what it recorded.

Reads `<partition>/.slapgrid/last-run.json` (slapos.grid.runrecord), the log that matters
for the failing step (the partition's instance.log, a promise's log, a program's log), and
recognises a few failures well enough to say what to do about them. Reads only.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slapos.grid.runrecord import RunRecord

TAIL = 30

#: (name, pattern over the error and the log's tail, what to do). First match wins.
HINTS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE), text)
    for name, pattern, text in (
        (
            "checksum-mismatch",
            r"(md5|sha\d*|checksum|hash)\w*\s*(sum\s*)?(mismatch|does ?n[o']t match|differs)"
            r"|mismatch(ed)? (md5|sha|checksum|hash)|MD5SUM",
            "a download did not match its checksum: the file changed where it is downloaded "
            "from, or the download was cut. Check the URL and the checksum in the release, "
            "then rerun.",
        ),
        (
            "disk-full",
            r"no space left on device|ENOSPC|disk quota exceeded|not enough free space",
            "the disk is full: free space on the filesystem of the partition (df -h), or "
            "lower instance_min_free_space, then rerun.",
        ),
        (
            "network-unreachable",
            r"network is unreachable|name or service not known|temporary failure in name "
            r"resolution|could not resolve host|no route to host|connection timed out"
            r"|couldn'?t download|download error|ENETUNREACH",
            "the node could not reach a server it downloads from: check DNS, the HTTP proxy "
            "and outgoing connections (curl the URL from the node), then rerun.",
        ),
        (
            "port-in-use",
            r"address already in use|EADDRINUSE",
            "another process holds the port the service wants: find it with "
            "'ss -ltnp | grep PORT' and stop it, or give the instance another port.",
        ),
        (
            "missing-build-tool",
            r"C compiler cannot create executables|unable to execute '?\S*(gcc|cc|g\+\+)"
            r"|(gcc|cc|g\+\+|make|pkg-config|patch): (command )?not found"
            r"|fatal error: \S+\.h: No such file|error: command '\S*(gcc|cc)' failed"
            r"|No package '\S+' found|command not found",
            "a compiler, a build tool or a system package is missing on the node: install "
            "it (Debian: apt-get install build-essential pkg-config and the -dev package "
            "named above), then rerun.",
        ),
        (
            "permission-denied",
            r"permission denied|EACCES|operation not permitted|wrong permissions",
            "a file or directory has the wrong owner or mode: the partition's files belong "
            "to its user (ls -la the path above; 'slapos node format' repairs partitions).",
        ),
    )
)


def hint_for(text: str) -> tuple[str, str] | None:
    """(name, advice) for the first recognised failure in `text`."""
    for name, pattern, advice in HINTS:
        if pattern.search(text):
            return name, advice
    return None


def tail(path: Path, lines: int = TAIL) -> list[str] | None:
    """The last `lines` lines of a file (None when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]
    except OSError:
        return None


@dataclass
class Explanation:
    partition_id: str
    record: RunRecord | None
    log: str = ""
    log_tail: list[str] | None = None
    hint: str = ""
    hint_name: str = ""
    rerun: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return self.record is not None and (
            self.record.status in ("failed", "promise-failed") or self.record.step is not None
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failing"] = self.failing
        return data


def relevant_log(partition: Path, record: RunRecord) -> Path:
    """The log a reader needs for the record's failing step."""
    step = record.step
    if step is not None and step.kind == "promise" and step.name:
        title = Path(step.name).stem if "." in step.name else step.name
        path = partition / ".slapgrid" / "promise" / "log" / f"{title}.log"
        if path.exists():
            return path
    if step is not None and step.kind == "supervisord" and ":" in step.name:
        program = step.name.split(":", 1)[1].removesuffix("-on-watch")
        path = partition / f".{partition.name}_{program}.log"
        if path.exists():
            return path
    return Path(record.log) if record.log else partition / ".slapgrid" / "log" / "instance.log"


def explain(partition: Path, cfg: str, lines: int = TAIL, command: str = "slapos") -> Explanation:
    """What the last run recorded for `partition`, with its log and a hint; `command` is
    how the rerun line names `slapos` (a shell word or an already quoted path)."""
    pid = partition.name
    record = RunRecord.read(partition / ".slapgrid")
    result = Explanation(pid, record)
    rerun = ["node", "instance", "--cfg", cfg, "--only-cp", pid, "--force", "-v"]
    result.rerun = f"{command} {shlex.join(rerun)}"  # a path with a space stays one argument
    if record is None:
        if not os.access(partition, os.R_OK | os.X_OK):
            result.notes.append(f"cannot read {partition}: run as root")
        else:
            result.notes.append("no run recorded yet (free, or not processed since the upgrade)")
        return result
    log_path = relevant_log(partition, record)
    result.log = str(log_path)
    if result.failing:
        result.log_tail = tail(log_path, lines)
        step = record.step
        text = "\n".join([record.error, step.message if step else "", *(result.log_tail or [])])
        found = hint_for(text)
        if found is not None:
            result.hint_name, result.hint = found
    return result


def partitions_of(instance_root: Path) -> list[Path]:
    """The partition directories of a node, in natural order (slappart2 before slappart10)."""

    def key(p: Path) -> tuple[str, int]:
        match = re.match(r"^(.*?)(\d+)$", p.name)
        return (match.group(1), int(match.group(2))) if match else (p.name, -1)

    try:
        entries = [p for p in instance_root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted((p for p in entries if p.name not in ("etc", "var")), key=key)
