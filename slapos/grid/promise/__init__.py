"""Promises: the checks a partition ships to say whether its service works (node.md §6).

Plugin promises are the Python files of `<partition>/etc/plugin/` (a `RunPromise` class on
`slapos.grid.promise.generic.GenericPromise`), each run in its own process by
`python -m slapos.grid.promise.plugin`. Legacy promises are the executables of
`<partition>/etc/promise/`: exit 0 is success, anything else a failure whose output is the
message. Every promise runs as the partition's owner, in the partition, killed (with its
whole process group) at `promise_timeout` seconds.

Results go where upstream puts them, so monitoring tools read both alike:
`.slapgrid/promise/result/<title>.status.json`, logs in `.slapgrid/promise/log/`, the
schedule in `.slapgrid/promise/cache/<title>`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from slapos.errors import PromiseError
from slapos.system import Clock, Credentials, Runner, SystemClock

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
    #: a plugin that failed in anomaly mode and allows banging: the master should know
    bang: bool = False

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
    computer_id: str = ""
    master_url: str = ""
    partition_key: str = ""
    partition_cert: str = ""
    #: the Python that runs plugin promises (default: ours, which provides their base class)
    python: str | None = None


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
    run: PromiseRun, runner: Runner, clock: Clock | None = None
) -> list[PromiseResult]:
    """Run the partition's promises (plugins, then legacy); return every result."""
    plugins, legacy = plugin_promises(run.partition), legacy_promises(run.partition)
    if not plugins and not legacy:
        return []
    result_dir, log_dir, cache_dir = promise_dirs(run.partition)
    for d in (result_dir, log_dir, cache_dir):
        d.mkdir(parents=True, exist_ok=True)
    base = result_dir.parent
    for name in DEPRECATED:
        with contextlib.suppress(FileNotFoundError):
            (base / name).unlink()
    owner = Credentials.owner_of(run.partition)
    # plugins write their own logs, as the partition's owner
    _chown_tree(run.partition / ".slapgrid", owner)
    clock = clock or SystemClock()
    now = clock.time()  # one date for the whole run: each promise's periodicity counts from it
    results = []
    for path in plugins:
        result = _run_one(run, runner, owner, path, clock, now, plugin=True)
        if result is not None:
            results.append(result)
    for path in legacy:
        result = _run_one(run, runner, owner, path, clock, now, plugin=False)
        if result is not None:
            results.append(result)
    _chown_tree(run.partition / ".slapgrid", owner)
    return results


def _plugin_argv(run: PromiseRun, path: Path) -> list[str]:
    _, log_dir, _ = promise_dirs(run.partition)
    config = {
        "path": str(path),
        "name": path.name,
        "log-folder": str(log_dir),
        "partition-folder": str(run.partition),
        "partition-id": run.partition_id,
        "computer-id": run.computer_id,
        "master-url": run.master_url,
        "partition-key": run.partition_key,
        "partition-cert": run.partition_cert,
        "debug": False,
        "check-anomaly": run.anomaly,
    }
    return [run.python or sys.executable, "-m", "slapos.grid.promise.plugin", json.dumps(config)]


def _saved_result(run: PromiseRun, path: Path, title: str, now: float) -> PromiseResult | None:
    result_dir, _, _ = promise_dirs(run.partition)
    saved = _read_json(result_dir / f"{title}.status.json")
    res = saved.get("result")
    if not isinstance(res, dict):
        return None
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


def _run_one(
    run: PromiseRun,
    runner: Runner,
    owner: Credentials,
    path: Path,
    clock: Clock,
    now: float,
    *,
    plugin: bool,
) -> PromiseResult | None:
    """Run one promise (or reuse its result within its periodicity); None: disabled."""
    title = _title(path)
    cache_path = promise_dirs(run.partition)[2] / title
    cache = _read_json(cache_path)
    next_run = cache.get("next_run_after", 0)
    if not run.force and isinstance(next_run, (int, float)) and now < next_run:
        saved = _saved_result(run, path, title, now)
        if saved is not None:
            return saved
    raw_history = cache.get("history")
    history = [bool(x) for x in raw_history] if isinstance(raw_history, list) else []
    argv = _plugin_argv(run, path) if plugin else [str(path)]
    start = clock.monotonic()
    completed = runner.run(
        argv, cwd=run.partition, env=dict(run.environ), user=owner, timeout=run.timeout
    )
    elapsed = clock.monotonic() - start
    periodicity = LEGACY_PERIODICITY
    answer: dict[str, object] | None = None
    if completed.timed_out:
        message, failed = f"Error: Promise timed out after {int(run.timeout)} seconds", True
    elif plugin:
        answer = _plugin_answer(completed.output)
        if answer is None:
            message, failed = "Error: No output returned by the promise", True
            last = completed.tail(1).strip()
            if last:  # the child's last words (a traceback's last line, mostly)
                message += f" ({last})"
        elif answer.get("skipped"):
            return None
        else:
            message, failed = str(answer.get("message", "")), bool(answer.get("failed"))
            with contextlib.suppress(TypeError, ValueError):
                periodicity = float(str(answer.get("periodicity", 2))) * 60
    else:
        message, failed = completed.output.strip(), completed.returncode != 0
        if failed and not message:
            message = f"exit status {completed.returncode}"
    message = message[-MAX_MESSAGE:]
    history = [*history, failed][-ANOMALY_FAILURES:]
    if plugin or not run.anomaly:
        reported_failure = failed  # plugins judge anomalies themselves
    else:
        # a legacy promise in anomaly mode tolerates a blip: 3 failures in a row count
        reported_failure = len(history) >= ANOMALY_FAILURES and all(history)
    wants_bang = bool(plugin and run.anomaly and failed and answer and answer.get("bang", True))
    result = PromiseResult(
        path.name,
        title,
        path,
        reported_failure,
        message,
        elapsed,
        now,
        run.anomaly,
        bang=wants_bang,
    )
    _save(run, result, failed, periodicity, history, legacy_log=not plugin)
    if failed:
        log.debug("%s: promise %s failed: %s", run.partition_id, path.name, message)
    return result


def _save(
    run: PromiseRun,
    result: PromiseResult,
    failed: bool,
    periodicity: float,
    history: list[bool],
    *,
    legacy_log: bool,
) -> None:
    """Result, schedule and (legacy promises: plugins keep their own) log files."""
    result_dir, log_dir, cache_dir = promise_dirs(run.partition)
    if legacy_log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(result.date))
        with open(log_dir / f"{result.title}.log", "a") as handle:
            level = "ERROR" if failed else "INFO"
            for line in result.message.splitlines() or [""]:
                handle.write(f"{stamp} - {level} - {line}\n")
    _write_json(result_dir / f"{result.title}.status.json", result.to_json())
    _write_json(
        cache_dir / result.title,
        {
            "is_tested": not run.anomaly,
            "is_anomaly_detected": run.anomaly,
            "periodicity": periodicity / 60,
            "next_run_after": result.date + periodicity,
            "timestamp": result.date,
            "module_file": str(result.path),
            "history": history,
        },
    )


def _plugin_answer(output: str) -> dict[str, object] | None:
    from slapos.grid.promise.plugin import RESULT_MARK

    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARK):
            with contextlib.suppress(ValueError):
                value = json.loads(line[len(RESULT_MARK) :])
                if isinstance(value, dict):
                    return value
    return None


def _chown_tree(path: Path, owner: Credentials) -> None:
    if os.geteuid() != 0 or not path.exists():
        return
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            with contextlib.suppress(OSError):
                os.lchown(os.path.join(root, name), owner.uid, owner.gid)
    with contextlib.suppress(OSError):
        os.lchown(path, owner.uid, owner.gid)


def first_failure(results: list[PromiseResult]) -> PromiseError | None:
    """PromiseError for the first failure, as upstream words it."""
    for r in results:
        if r.failed:
            return PromiseError(f"Promise {r.name!r} failed with output: {r.message}")
    return None


def check(run: PromiseRun, runner: Runner) -> list[PromiseResult]:
    """Run the promises and raise PromiseError for the first failure."""
    results = run_promises(run, runner)
    error = first_failure(results)
    if error is not None:
        raise error
    return results
