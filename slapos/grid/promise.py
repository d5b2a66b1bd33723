"""Promises: the checks a partition ships to say whether its service works (node.md §6).

Legacy promises are the executables of `<partition>/etc/promise/`: exit 0 is success,
anything else a failure whose output is the message. Each runs as the partition's owner,
in the partition, killed (with its whole process group) at `promise_timeout` seconds.

Results go where upstream puts them, so monitoring tools read both alike:
`.slapgrid/promise/result/<title>.status.json`, logs in `.slapgrid/promise/log/`, the
schedule in `.slapgrid/promise/cache/<title>`.

Must not import slapos.cli.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from slapos.errors import PromiseError
from slapos.system import Credentials, Runner

log = logging.getLogger(__name__)

#: Legacy promises run at most every 2 minutes in anomaly mode (upstream's fixed value).
LEGACY_PERIODICITY = 120.0
#: In anomaly mode a legacy promise fails only after this many failures in a row.
ANOMALY_FAILURES = 3
MAX_MESSAGE = 5000
DEPRECATED = (
    "promise_stats.json",
    "promise_status.json",
    "global.json",
    "public.json",
)


@dataclass(frozen=True)
class PromiseResult:
    name: str  # file name, e.g. "check-web.sh"
    title: str  # file name without extension
    path: Path
    failed: bool
    message: str
    execution_time: float
    date: float
    anomaly: bool
    skipped: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "title": self.title,
            "name": self.name,
            "path": str(self.path),
            "execution-time": self.execution_time,
            "result": {
                "type": "Anomaly Result" if self.anomaly else "Test Result",
                "failed": self.failed,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(self.date)),
                "message": self.message,
            },
        }


@dataclass(frozen=True)
class PromiseRun:
    """Everything promises need from the node."""

    partition: Path
    partition_id: str
    timeout: float
    environ: Mapping[str, str]
    force: bool = True
    anomaly: bool = False


def promise_dirs(partition: Path) -> tuple[Path, Path, Path]:
    base = partition / ".slapgrid" / "promise"
    return base / "result", base / "log", base / "cache"


def legacy_promises(partition: Path) -> list[Path]:
    folder = partition / "etc" / "promise"
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        path = folder / name
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and os.access(path, os.X_OK):
            found.append(path)
        else:
            log.warning("bad promise file %s: not an executable regular file", path)
    return found


def plugin_promises(partition: Path) -> list[Path]:
    folder = partition / "etc" / "plugin"
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder / n for n in names if n.endswith(".py") and not n.startswith("__init__")]


def _title(path: Path) -> str:
    return path.stem if path.suffix else path.name


def _read_json(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def run_promises(
    run: PromiseRun, runner: Runner, clock_time: float | None = None
) -> list[PromiseResult]:
    """Run the partition's promises; return every result (skipped ones included)."""
    result_dir, log_dir, cache_dir = promise_dirs(run.partition)
    for d in (result_dir, log_dir, cache_dir):
        d.mkdir(parents=True, exist_ok=True)
    base = result_dir.parent
    for name in DEPRECATED:
        with contextlib.suppress(FileNotFoundError):
            (base / name).unlink()
    promises = legacy_promises(run.partition)
    for plugin in plugin_promises(run.partition):
        # TODO(issue 6): plugin promises need upstream's GenericPromise API; not run yet.
        log.warning(
            "%s: plugin promise %s is not supported yet, skipped", run.partition_id, plugin.name
        )
    results = []
    owner = Credentials.owner_of(run.partition)
    for path in promises:
        results.append(
            _run_legacy(run, runner, owner, path, result_dir, log_dir, cache_dir, clock_time)
        )
    _chown_tree(run.partition / ".slapgrid", owner)
    return results


def _run_legacy(
    run: PromiseRun,
    runner: Runner,
    owner: Credentials,
    path: Path,
    result_dir: Path,
    log_dir: Path,
    cache_dir: Path,
    clock_time: float | None,
) -> PromiseResult:
    title = _title(path)
    now = clock_time if clock_time is not None else time.time()
    cache_path = cache_dir / title
    cache = _read_json(cache_path)
    result_path = result_dir / f"{title}.status.json"
    next_run = float(cache.get("next_run_after", 0) or 0)  # type: ignore[arg-type]
    raw_history = cache.get("history")
    history = [bool(x) for x in raw_history] if isinstance(raw_history, list) else []
    if not run.force and now < next_run and result_path.exists():
        saved = _read_json(result_path)
        res = saved.get("result", {})
        assert isinstance(res, dict)
        return PromiseResult(
            path.name,
            title,
            path,
            bool(res.get("failed")),
            str(res.get("message", "")),
            0.0,
            now,
            run.anomaly,
            skipped=True,
        )
    start = time.monotonic()
    completed = runner.run(
        [str(path)], cwd=run.partition, env=dict(run.environ), user=owner, timeout=run.timeout
    )
    elapsed = time.monotonic() - start
    if completed.timed_out:
        message = f"Error: Promise timed out after {int(run.timeout)} seconds"
        failed = True
    else:
        message = completed.output.strip()
        failed = completed.returncode != 0
        if failed and not message:
            message = f"exit status {completed.returncode}"
    message = message[-MAX_MESSAGE:]
    history = [*history, failed][-ANOMALY_FAILURES:]
    # Anomaly mode tolerates a blip: only several failures in a row count.
    in_a_row = len(history) >= ANOMALY_FAILURES and all(history)
    reported_failure = in_a_row if run.anomaly else failed
    result = PromiseResult(
        path.name, title, path, reported_failure, message, elapsed, now, run.anomaly
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    with open(log_dir / f"{title}.log", "a") as handle:
        level = "ERROR" if failed else "INFO"
        for line in message.splitlines() or [""]:
            handle.write(f"{stamp} - {level} - {line}\n")
    _write_json(result_path, result.to_json())
    _write_json(
        cache_path,
        {
            "is_tested": not run.anomaly,
            "is_anomaly_detected": run.anomaly,
            "periodicity": LEGACY_PERIODICITY / 60,
            "next_run_after": now + LEGACY_PERIODICITY,
            "timestamp": now,
            "module_file": str(path),
            "history": history,
        },
    )
    if failed:
        log.debug("%s: promise %s failed: %s", run.partition_id, path.name, message)
    return result


def _chown_tree(path: Path, owner: Credentials) -> None:
    if os.geteuid() != 0 or not path.exists():
        return
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            with contextlib.suppress(OSError):
                os.lchown(os.path.join(root, name), owner.uid, owner.gid)
    with contextlib.suppress(OSError):
        os.lchown(path, owner.uid, owner.gid)


def check(run: PromiseRun, runner: Runner) -> list[PromiseResult]:
    """Run the promises and raise PromiseError for the first failure, as upstream words it."""
    results = run_promises(run, runner)
    for r in results:
        if r.failed:
            raise PromiseError(f"Promise {r.name!r} failed with output: {r.message}")
    return results
