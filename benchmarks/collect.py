"""Cost of one `node collect` run besides its CPU measure window, on a database with history.

    .venv/bin/python benchmarks/collect.py [--days 15] [--processes 20] [--partitions 10]

Fills a collector database with --days days of per-minute samples of --processes processes
spread over --partitions partition users (what a busy node accumulates with the default
collect_cache of 15 days), then times three collector runs over this machine's own user
(measure window 0): the first dumps and archives the past days, the next ones are the
steady state. Reports the database size, each run's wall time and the peak RSS.

Target: a steady-state run well under the 5 s measure window, so a per-minute cron never
overlaps itself.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from slapos.collect.collector import CollectConfig, collect  # noqa: E402
from slapos.collect.db import CollectorDB  # noqa: E402


def fill(data_log: Path, days: int, processes: int, partitions: int) -> int:
    today = datetime.datetime.now(datetime.UTC).date()
    rows = 0
    with CollectorDB.open(data_log) as db:
        for back in range(1, days + 1):
            day = (today - datetime.timedelta(days=back)).isoformat()
            minutes = [f"{m // 60:02d}:{m % 60:02d}:00" for m in range(1440)]
            db.insert(
                "system", [(0.5, 20, 1e9, 1e9, 1e6, 0, 0, 1e6, 0, 0, day, t) for t in minutes]
            )
            db.insert(
                "user",
                [
                    (
                        f"slapuser{p % partitions}",
                        p,
                        f"{p}-1.0",
                        5.0,
                        60.0,
                        2,
                        0.5,
                        5e7,
                        1e6,
                        1e3,
                        day,
                        t,
                    )
                    for t in minutes
                    for p in range(processes)
                ],
            )
            rows += 1440 * (processes + 1)
            db.commit()
    return rows


def one_run(config: CollectConfig) -> tuple[float, int, int, float]:
    start = time.perf_counter()
    result = collect(config)
    took = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return took, result.processes, len(result.dumped_days), peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=15)
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=10)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bcollect", dir="/tmp"))
    try:
        me = psutil.Process().username()
        config = CollectConfig(
            computer_id="COMP-BENCH",
            instance_root=base,
            users={me: base / "slappart0"},
            measure_interval=0.0,
            days_to_preserve=args.days,
        )
        config.data_log.mkdir(parents=True)
        start = time.perf_counter()
        # filled in a child process, so that the peak RSS below is the collector's own
        with multiprocessing.get_context("fork").Pool(1) as pool:
            rows = pool.apply(fill, (config.data_log, args.days, args.processes, args.partitions))
        size = (config.data_log / "collector.db").stat().st_size / 1e6
        print(
            f"history: {rows} rows, {size:.0f} MB (filled in {time.perf_counter() - start:.0f} s)"
        )
        worst_steady = 0.0
        for n in range(3):
            with multiprocessing.get_context("fork").Pool(1) as pool:  # a fresh process per run
                took, processes, dumped, peak = pool.apply(one_run, (config,))
            what = f"dumped {dumped} days" if dumped else "steady state"
            label = f"run {n + 1}: {took:6.2f} s, peak RSS {peak:4.0f} MB"
            print(f"{label} ({processes} processes; {what})")
            if n:
                worst_steady = max(worst_steady, took)
        print(f"steady-state run {worst_steady:.2f} s (target < 5 s)")
        return 0 if worst_steady < 5 else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
