"""Wall time of `slapos --version` and `slapos request --help`, ours beside slapos.core 1.26.1.

Target (issues 2 and 19): ours <= 0.10x upstream's, each command against the same command
of upstream. Run:  .venv/bin/python benchmarks/cli_startup.py
Both sides run their `slapos` console script, as a user types it. Upstream is taken from
$SLAPOS_UPSTREAM_VENV (default /opt/slapos-dev/upstream-1.26.1). Each command runs RUNS
times after one warm-up, as in a user's shell (bytecode cached: PYTHONDONTWRITEBYTECODE is
dropped); the median is reported.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = int(os.environ.get("RUNS", "15"))
SCRIPT = Path(sys.executable).parent / "slapos"
OURS = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "slapos"]
UPSTREAM_VENV = Path(os.environ.get("SLAPOS_UPSTREAM_VENV", "/opt/slapos-dev/upstream-1.26.1"))
UPSTREAM = [str(UPSTREAM_VENV / "bin" / "slapos")]
CASES = {
    "--version": (["--version"], ["--version"]),
    "request --help": (["request", "--help"], ["request", "--help"]),
}


def median_time(argv: list[str]) -> float:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLAPOS_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    subprocess.run(argv, capture_output=True, env=env, check=False)  # warm the page cache
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> int:
    have_upstream = Path(UPSTREAM[0]).exists()
    print(f"{'command':<18} {'ours (s)':>9} {'1.26.1 (s)':>11} {'ratio':>7}  target <= 0.10")
    worst = 0.0
    for name, (ours_args, up_args) in CASES.items():
        ours = median_time(OURS + ours_args)
        if have_upstream:
            up = median_time(UPSTREAM + up_args)
            ratio = ours / up
            worst = max(worst, ratio)
            print(f"{name:<18} {ours:>9.3f} {up:>11.3f} {ratio:>7.2f}")
        else:
            print(f"{name:<18} {ours:>9.3f} {'n/a':>11}")
    if have_upstream:
        print(f"worst ratio {worst:.2f}: {'OK' if worst <= 0.10 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
