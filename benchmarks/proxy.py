"""Our proxy against slapos.core 1.26.1's, side by side, each driven by its own library.

    .venv/bin/python benchmarks/proxy.py [--partitions 200] [--clients 4,16] [--workers 1]

For each side: a fresh proxy with one computer of N partitions (formatted with
loadComputerConfigurationFromXML), then
  1. sequential throughput: one client requests N new instances, then updates each;
  2. 4 and 16 concurrent clients: each requests N/clients new instances and updates them;
     every request must be answered and no partition handed out twice; the clients
     start their loops together, timed from the first loop's start to the last one's
     end (process start-up and imports are not request time);
  3. getFullComputerInformation latency with N busy partitions: repeated reads, and
     reads right after a change (no cached answer);
  4. peak RSS of the proxy (VmHWM, summed over its processes when it has several)
     over the whole run;
  5. the proxy's CPU time per sequential request (/proc, 10 ms ticks: a rough figure),
     which tells the proxy's own cost from the client's and the wake-ups between them.
Prints a table; exit 1 if a side had errors or double allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slapos.slap.marshal import dumps  # noqa: E402
from tests.fixtures.common import free_port, wait_for_port  # noqa: E402

UPSTREAM = Path(os.environ.get("SLAPOS_UPSTREAM_VENV", "/opt/slapos-dev/upstream-1.26.1"))
DRIVER = Path(__file__).with_name("proxy_driver.py")
COMPUTER = "local_computer"
#: seconds given to the concurrent drivers to start before their loops begin together
CONCURRENT_START_DELAY = 3.0


@contextmanager
def running_proxy(side: str, directory: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    directory.mkdir(parents=True)
    port = free_port()
    config = directory / "slapos-proxy.cfg"
    config.write_text(
        f"[slapos]\ncomputer_id = {COMPUTER}\n[slapproxy]\nhost = 127.0.0.1\nport = {port}\n"
        f"database_uri = {directory}/proxy.db\n"
        + (f"workers = {ARGS.workers}\n" if side == "ours" else "")
        + (f"threads = {ARGS.threads}\n" if side == "ours" and ARGS.threads else "")
    )
    if side == "ours":
        argv = [sys.executable, "-m", "slapos", "-q", "proxy", "start", "--cfg", str(config)]
    else:
        argv = [str(UPSTREAM / "bin" / "slapos"), "proxy", "start", "--cfg", str(config)]
    with open(directory / "proxy.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        url = f"http://127.0.0.1:{port}"
        form = {
            "reference": COMPUTER, "address": "127.0.0.1", "netmask": "255.0.0.0",
            "partition_list": [
                {"reference": f"slappart{i}", "tap": {"name": f"slaptap{i}"},
                 "address_list": [{"addr": f"10.0.{i // 250}.{i % 250 + 1}",
                                   "netmask": "255.255.0.0"}]}
                for i in range(ARGS.partitions)
            ],
        }  # fmt: skip
        data = urlencode({"xml": dumps(form)}).encode()
        urllib.request.urlopen(f"{url}/loadComputerConfigurationFromXML", data, timeout=60).read()
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a proxy with several worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(children.get(current, []))
    return pids


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """User + system CPU time the proxy's processes have used so far (/proc/PID/stat)."""
    total = 0
    for pid in _tree(proc.pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(proc: subprocess.Popen[bytes]) -> float:
    """Peak RSS of the proxy's processes, summed (an upper bound: shared pages count twice)."""
    total = 0
    for pid in _tree(proc.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024 if total else float("nan")


def driver(
    side: str,
    url: str,
    mode: str,
    count: int,
    prefix: str,
    library: str | None = None,
    start_at: float | None = None,
) -> subprocess.Popen[str]:
    """Run the driver with `library`'s Python (default: the side's own library); with
    `start_at` (a time.time()), its request loop waits for that moment."""
    library = library or side
    python = sys.executable if library == "ours" else str(UPSTREAM / "bin" / "python")
    env = {**os.environ, "PYTHONPATH": str(REPO) if library == "ours" else ""}
    if start_at is not None:
        env["PROXY_BENCH_START_AT"] = repr(start_at)
    return subprocess.Popen(
        [python, str(DRIVER), url, COMPUTER, mode, str(count), prefix],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def collect(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=600)
    if proc.returncode:
        raise SystemExit(f"driver failed: {err[-2000:]}")
    return json.loads(out.splitlines()[-1])


def measure(side: str, work: Path) -> dict:
    n = ARGS.partitions
    result: dict = {}
    rss = 0.0
    with running_proxy(side, work / f"{side}-seq") as (url, proc):
        before = cpu_seconds(proc)
        seq = collect(driver(side, url, "requests", n, "seq"))
        result["seq_rps"] = seq["requests"] / seq["elapsed"]
        result["seq_cpu_us"] = (cpu_seconds(proc) - before) / seq["requests"] * 1e6
        result["errors"] = seq["errors"]
        result["double"] = n - len(set(seq["partitions"].values()))
        lat = collect(driver(side, url, "latency", ARGS.latency_count, "seq"))
        result["latency_cached_ms"] = statistics.median(lat["cached"]) * 1000
        result["latency_fresh_ms"] = statistics.median(lat["fresh"]) * 1000
        result["full_info_bytes"] = lat["size"]
        rss = max(rss, peak_rss_mib(proc))
        result["rss_after_sequential"] = rss
    with running_proxy(side, work / f"{side}-uplib") as (url, proc):
        same = collect(driver(side, url, "requests", n, "up", library="upstream"))
        result["uplib_rps"] = same["requests"] / same["elapsed"]
        result["errors"] += same["errors"]
        rss = max(rss, peak_rss_mib(proc))
    with running_proxy(side, work / f"{side}-raw") as (url, proc):
        raw = collect(driver(side, url, "raw", n, "raw"))
        result["raw_rps"] = raw["requests"] / raw["elapsed"]
        result["errors"] += raw["errors"]
        rss = max(rss, peak_rss_mib(proc))
    result["first_error"] = ""
    for clients in ARGS.clients:
        with running_proxy(side, work / f"{side}-conc{clients}") as (url, proc):
            per = n // clients
            # the loops start together once every driver has started and imported its library
            start_at = time.time() + CONCURRENT_START_DELAY + clients * 0.1
            procs = [
                driver(side, url, "requests", per, f"c{k}-", start_at=start_at)
                for k in range(clients)
            ]
            outs = [collect(p) for p in procs]
            elapsed = max(o["ended_at"] for o in outs) - min(o["started_at"] for o in outs)
            result[f"conc{clients}_rps"] = sum(o["requests"] for o in outs) / elapsed
            result["errors"] += sum(o["errors"] for o in outs)
            given = [pid for o in outs for pid in o["partitions"].values()]
            result["double"] += len(given) - len(set(given))
            result[f"conc{clients}_double"] = len(given) - len(set(given))
            result[f"conc{clients}_errors"] = sum(o["errors"] for o in outs)
            result["first_error"] = result["first_error"] or next(
                (o["first_error"] for o in outs if "first_error" in o), ""
            )
            rss = max(rss, peak_rss_mib(proc))
    result["peak_rss_mib"] = rss
    return result


def best(rounds: list[dict]) -> dict:
    """Best throughput and latency over the rounds; worst memory; all errors counted."""
    result = dict(rounds[0])
    for key in result:
        values = [r[key] for r in rounds]
        if key.endswith("_rps"):
            result[key] = max(values)
        elif key.endswith(("_ms", "_us")):
            result[key] = min(values)
        elif key.startswith(("peak_rss", "rss_")):
            result[key] = max(values)
        elif key in ("errors", "double") or key.endswith(("_errors", "_double")):
            result[key] = sum(values)
    return result


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=200)
    parser.add_argument(
        "--clients", type=lambda text: [int(n) for n in text.split(",")], default=[4, 16],
        help="numbers of concurrent clients, comma-separated (default 4,16)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="our proxy's [slapproxy] workers")
    parser.add_argument("--threads", type=int, help="our proxy's [slapproxy] threads")
    parser.add_argument("--latency-count", type=int, default=30)
    parser.add_argument("--only", choices=("ours", "upstream"))
    parser.add_argument(
        "--repeat", type=int, default=2,
        help="rounds, sides alternating; the best round of each side is kept (shared machines)",
    )  # fmt: skip
    ARGS = parser.parse_args()
    sides = [ARGS.only] if ARGS.only else ["upstream", "ours"]
    rounds: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        for index in range(ARGS.repeat):
            for side in sides:
                rounds[side].append(measure(side, Path(tmp) / str(index)))
    results = {side: best(rounds[side]) for side in sides}
    rows = [
        ("sequential requests/s", "seq_rps", "{:.0f}", ">= 3x"),
        ("proxy CPU per request, seq. (us)", "seq_cpu_us", "{:.0f}", ""),
        ("sequential, 1.26.1's library", "uplib_rps", "{:.0f}", ""),
        ("sequential, bare HTTP client", "raw_rps", "{:.0f}", ""),
    ]
    for clients in ARGS.clients:
        rows += [
            (f"{clients} clients requests/s", f"conc{clients}_rps", "{:.0f}", ""),
            (f"{clients} clients errors", f"conc{clients}_errors", "{:d}", "0"),
            (f"{clients} clients double allocations", f"conc{clients}_double", "{:d}", "0"),
        ]
    rows += [
        ("full info, repeated (ms)", "latency_cached_ms", "{:.1f}", ""),
        ("full info, after a change (ms)", "latency_fresh_ms", "{:.1f}", "<= 0.2x"),
        ("full info size (bytes)", "full_info_bytes", "{:d}", ""),
        ("peak RSS (MiB)", "peak_rss_mib", "{:.1f}", "<= 0.5x"),
        ("RSS after sequential+latency", "rss_after_sequential", "{:.1f}", ""),
        ("errors", "errors", "{:d}", "0"),
        ("double allocations", "double", "{:d}", "0"),
    ]
    print(
        f"{ARGS.partitions} partitions, {ARGS.clients} concurrent clients, "
        f"our proxy with {ARGS.workers} worker process(es), "
        f"best of {ARGS.repeat} rounds (errors and double allocations: all rounds)"
    )
    header = f"{'metric':34} " + " ".join(f"{s:>10}" for s in sides)
    if len(sides) == 2:
        header += f" {'ratio':>8} {'target':>8}"
    print(header)
    for label, key, fmt, target in rows:
        cells = " ".join(f"{fmt.format(results[s][key]):>10}" for s in sides)
        ratio = ""
        if len(sides) == 2 and isinstance(results["upstream"][key], float):
            base = results["upstream"][key]
            ratio = f"{results['ours'][key] / base:.2f}x" if base else ""
        print(f"{label:34} {cells} {ratio:>8} {target:>8}")
    for side in sides:
        for r in rounds[side]:
            if r["first_error"]:
                print(f"{side}: first error: {r['first_error']}")
                break
    bad = any(results[s]["errors"] or results[s]["double"] for s in sides)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
