"""How many nodes one master serves: simulated nodes in steady state, raised until the p99
of some kind of call passes 1 s.

    .venv/bin/python benchmarks/capacity.py [--cadence 6] [--duration 30]
        [--sides upstream,sqlite1,...] [--start 50] [--limit 3000]

Each simulated node has 10 partitions, each holding an instance, and makes the calls
slapos.core 1.26.1's node makes against a master, one TCP connection per call as its
library does, with the minute compressed to `--cadence` seconds:

* every cadence, `node software`: getHateoasUrl, getFullComputerInformation;
  then `node instance`: the same two, then per partition getComputerPartitionCertificate
  and startedComputerPartition;
* every 60 cadences (hourly), `node report` and `node format`: getFullComputerInformation
  and loadComputerConfigurationFromXML (the computer's configuration posted again).

Nodes start at random phases within the cadence. For each side, the node count grows
(x1.5) from `--start` until a step fails (the p99 of a kind of call above 1 s, an error,
or nodes falling behind their cadence: fewer than 95 % of the calls due), then is
bisected; the largest passing count is the side's capacity. Sides: `upstream` (1.26.1's
proxy), `sqlite1` (ours, one process), `sqlite2` (ours, `workers = 2` on one sqlite
file), `pg2` (ours, `workers = 2` on PostgreSQL, a server started for the run, a database
per side), each served by gunicorn (the default `http_server`) or, with the suffix
`-granian`, by granian. When `upstream` runs first, our sides start at 3 times its
capacity (every side of ours passed that). The load generator runs in two processes
(uvloop's event loop when installed, as the `test` extra does: a third less CPU per call);
its CPU time and the master's are reported per node-minute (a real minute = one cadence)
and per call. The summary at the end gives, per side, the nodes served, the ratio to
1.26.1's, and the master's CPU at that step, with the load average at the start and the
end (the machine's spare CPU bounds every figure). The seven sides take about 40 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
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
SR = "http://sr.example.invalid/software.cfg"
PARTITIONS = 10
KINDS = (
    "getHateoasUrl", "getFullComputerInformation", "getComputerPartitionCertificate",
    "startedComputerPartition", "loadComputerConfigurationFromXML",
)  # fmt: skip
GENERATORS = 2
SIDES = (
    "upstream", "sqlite1", "sqlite2", "pg2", "sqlite1-granian", "sqlite2-granian", "pg2-granian",
)  # fmt: skip


def computer_xml(index: int) -> str:
    computer = {
        "reference": f"node{index}", "address": "127.0.0.1", "netmask": "255.0.0.0",
        "partition_list": [
            {"reference": f"slappart{i}", "tap": {"name": f"slaptap{i}"},
             "address_list": [{"addr": f"10.{index // 250}.{index % 250}.{i + 1}",
                               "netmask": "255.0.0.0"}]}
            for i in range(PARTITIONS)
        ],
    }  # fmt: skip
    return dumps(computer)


def _post(url: str, path: str, form: dict[str, str]) -> None:
    data = urlencode(form).encode()
    urllib.request.urlopen(f"{url}/{path}", data, timeout=120).read()


# ---- the load generator (runs in its own processes) -----------------------------------------


class _Exchange(asyncio.Protocol):
    """One call on its own connection: send the request, keep what comes until the close.

    A bare protocol, not asyncio's streams: the generator shares the master's CPUs, so each
    call should cost it as little as possible."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self.request, self.done, self.answer = request, done, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.answer += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(self.answer)
            else:
                self.done.set_exception(exc)


def _request(host: str, kind: str, query: str, body: bytes | None) -> bytes:
    method = "POST" if body is not None else "GET"
    head = f"{method} /{kind}{'?' + query if query else ''} HTTP/1.1\r\nHost: {host}\r\n"
    head += "Connection: close\r\n"
    if body is not None:
        head += (
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        )
    return head.encode() + b"\r\n" + (body or b"")


async def _call(host: str, port: int, request: bytes) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Exchange(request, done), host, port)
    try:
        answer = await done
    finally:
        transport.close()
    return int(answer[9:12]) if answer[:5] == b"HTTP/" else 0


async def _node(
    index: int,
    target: tuple[str, int],
    cadence: float,
    until: float,
    phase: float,
    results: dict[str, list[float]],
    errors: list[str],
) -> None:
    host, port = target
    computer = f"node{index}"
    xml_body = urlencode({"xml": computer_xml(index)}).encode()

    async def call(kind: str, query: str = "", body: bytes | None = None) -> None:
        started = time.monotonic()
        try:
            status = await _call(host, port, _request(host, kind, query, body))
        except OSError as exc:
            status, reason = 0, str(exc)
        else:
            reason = str(status)
        results[kind].append(time.monotonic() - started)
        # 1.26.1's proxy does not serve getHateoasUrl: a 404 there is its answer
        if status != 200 and not (kind == "getHateoasUrl" and status == 404):
            errors.append(f"{kind} {reason}")

    full = f"computer_id={computer}"
    await asyncio.sleep(phase)
    cycle = int(phase * 1000) % 60
    while time.monotonic() < until:
        begin = time.monotonic()
        for _ in range(2):  # node software, then node instance
            await call("getHateoasUrl")
            await call("getFullComputerInformation", full)
        for i in range(PARTITIONS):
            part = f"computer_id={computer}&computer_partition_id=slappart{i}"
            await call("getComputerPartitionCertificate", part)
            await call("startedComputerPartition", body=part.encode())
        cycle += 1
        if cycle % 60 == 0:  # hourly: node report, node format
            await call("getFullComputerInformation", full)
            await call("loadComputerConfigurationFromXML", body=xml_body)
        await asyncio.sleep(max(0.0, cadence - (time.monotonic() - begin)))


def _generate(nodes: list[int], target: tuple[str, int], cadence: float, duration: float,
              start_at: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]  # fmt: skip
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: list[str] = []
    rng = random.Random(nodes[0] if nodes else 0)

    async def main() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        until = time.monotonic() + duration
        await asyncio.gather(
            *(_node(n, target, cadence, until, rng.uniform(0, cadence), results, errors)
              for n in nodes)
        )  # fmt: skip

    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        import uvloop  # a third less of the generator's CPU per call than asyncio's loop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    queue.put((results, errors[:20], len(errors), cpu))


def run_load(target: tuple[str, int], nodes: int, cadence: float, duration: float) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 1.0
    shares = [list(range(nodes))[k::GENERATORS] for k in range(GENERATORS)]
    workers = [
        multiprocessing.Process(
            target=_generate, args=(share, target, cadence, duration, start_at, queue)
        )
        for share in shares
    ]
    for worker in workers:
        worker.start()
    gathered = [queue.get(timeout=duration + 600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: list[str] = []
    error_count = 0
    generator_cpu = 0.0
    for part, some_errors, count, cpu in gathered:
        for kind, values in part.items():
            results[kind].extend(values)
        errors.extend(some_errors)
        error_count += count
        generator_cpu += cpu
    p99 = {}
    for kind, values in results.items():
        if values:
            ordered = sorted(values)
            p99[kind] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p99": p99,
        "calls": sum(len(v) for v in results.values()),
        "errors": error_count,
        "error_sample": errors[:5],
        "generator_cpu": generator_cpu,
    }


# ---- the masters -------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    pids, changed = {pid}, True
    while changed:
        changed = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in pids:
                try:
                    parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if parent in pids:
                    pids.add(int(entry.name))
                    changed = True
    return sorted(pids)


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for each in _tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def master(side: str, directory: Path, pg_uri: str | None) -> Iterator[tuple[str, int, int]]:
    directory.mkdir(parents=True)
    port = free_port()
    backend, _, server = side.partition("-")
    database = pg_uri if backend == "pg2" else f"{directory}/proxy.db"
    config = directory / "slapos-proxy.cfg"
    text = f"[slapos]\ncomputer_id = node0\n[slapproxy]\nhost = 127.0.0.1\nport = {port}\n"
    text += f"database_uri = {database}\n"
    if side != "upstream":
        text += f"workers = {2 if backend in ('sqlite2', 'pg2') else 1}\n"
        text += f"http_server = {server or 'gunicorn'}\n"
    config.write_text(text)
    if side == "upstream":
        argv = [str(UPSTREAM / "bin" / "slapos"), "proxy", "start", "--cfg", str(config)]
    else:
        argv = [sys.executable, "-m", "slapos", "-q", "proxy", "start", "--cfg", str(config)]
    with open(directory / "proxy.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        yield "127.0.0.1", port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def step(target: tuple[str, int], pid: int, nodes: int, args: argparse.Namespace) -> dict:
    before = cpu_seconds(pid)
    result = run_load(target, nodes, args.cadence, args.duration)
    master_cpu = cpu_seconds(pid) - before
    node_minutes = nodes * args.duration / args.cadence
    # every node keeps its cadence: the calls of all its cycles are made (a master that
    # answers slowly enough makes nodes fall behind, which lowers its load: a failure too)
    expected = nodes * (4 + 2 * PARTITIONS) * args.duration / args.cadence
    result["kept_cadence"] = result["calls"] >= 0.95 * expected
    result["ok"] = (
        result["errors"] == 0
        and result["kept_cadence"]
        and all(v <= 1.0 for v in result["p99"].values())
    )
    result["master_ms_per_node_minute"] = 1000 * master_cpu / node_minutes
    result["master_us_per_call"] = 1e6 * master_cpu / max(1, result["calls"])
    result["generator_ms_per_node_minute"] = 1000 * result["generator_cpu"] / node_minutes
    result["master_cpu_share"] = master_cpu / args.duration
    result["generator_cpu_share"] = result["generator_cpu"] / args.duration
    worst = max(result["p99"].items(), key=lambda kv: kv[1])
    print(
        f"  {nodes:5d} nodes: {'pass' if result['ok'] else 'FAIL'}"
        f"  worst p99 {worst[1] * 1000:7.1f} ms"
        f" ({worst[0]}), {result['calls']} calls"
        f"{'' if result['kept_cadence'] else ' (nodes fell behind)'}, {result['errors']} errors,"
        f" master {result['master_ms_per_node_minute']:.1f} ms/node-min"
        f" ({result['master_cpu_share']:.2f} CPU), generator"
        f" {result['generator_ms_per_node_minute']:.1f} ms/node-min"
        f" ({result['generator_cpu_share']:.2f} CPU)"
        + (f"  e.g. {result['error_sample'][:2]}" if result["errors"] else ""),
        flush=True,
    )
    return result


def capacity(
    side: str, work: Path, pg_uri: str | None, start: int, args: argparse.Namespace
) -> dict:
    print(f"{side}:", flush=True)
    populated = 0
    passed, failed = 0, None
    last: dict = {}
    with master(side, work / side, pg_uri) as (host, port, pid):
        url = f"http://{host}:{port}"

        def grow(count: int) -> None:
            nonlocal populated
            if count > populated:
                started = time.monotonic()
                populate_range(url, populated, count)
                print(f"  (populated {count} nodes in {time.monotonic() - started:.0f} s)")
                populated = count

        nodes = start
        while nodes <= args.limit:
            grow(nodes)
            result = step((host, port), pid, nodes, args)
            if not result["ok"]:
                failed = nodes
                break
            passed, last = nodes, result
            nodes = int(nodes * 1.5)
        while failed is not None and failed - passed > max(10, passed // 10):
            middle = (passed + failed) // 2
            grow(middle)
            result = step((host, port), pid, middle, args)
            if result["ok"]:
                passed, last = middle, result
            else:
                failed = middle
    print(f"  => {side}: {passed} nodes", flush=True)
    return {"side": side, "nodes": passed, **last}


def populate_range(url: str, start: int, stop: int) -> None:
    for index in range(start, stop):
        _post(url, "loadComputerConfigurationFromXML", {"xml": computer_xml(index)})
        _post(url, "supplySupply", {"url": SR, "computer_id": f"node{index}", "state": "available"})
        for i in range(PARTITIONS):
            _post(
                url, "requestComputerPartition",
                {"software_release": SR, "software_type": "default",
                 "partition_reference": f"n{index}-i{i}",
                 "partition_parameter_xml": dumps({"n": str(i)}),
                 "filter_xml": dumps({"computer_guid": f"node{index}"}),
                 "state": dumps("started"), "shared_xml": dumps(False)},
            )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cadence", type=float, default=6.0, help="seconds per node minute")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per step")
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--start", type=int, default=50, help="nodes of the first step")
    parser.add_argument("--limit", type=int, default=3000, help="stop growing there")
    args = parser.parse_args()
    sides = args.sides.split(",")
    began, load_before = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="slapos-capacity-") as tmp:
        work = Path(tmp)
        servers = server = None
        if any(side.startswith("pg2") for side in sides):
            from tests.fixtures.postgres import start_postgres

            servers = start_postgres()
            server = next(servers)
        results: list[dict] = []  # type: ignore[type-arg]
        try:
            for side in sides:
                pg_uri = None
                if server is not None and side.startswith("pg2"):
                    name = side.replace("-", "_")
                    server.psql(f"CREATE DATABASE {name}")
                    pg_uri = server.uri(name)
                base = next((r["nodes"] for r in results if r["side"] == "upstream"), 0)
                # ours start at 3x 1.26.1's capacity when it was measured first (all passed it)
                start = max(args.start, 3 * base) if side != "upstream" else args.start
                results.append(capacity(side, work, pg_uri, start, args))
        finally:
            if servers is not None:
                servers.close()
    base = next((r["nodes"] for r in results if r["side"] == "upstream"), None)
    print()
    print(
        f"{time.monotonic() - began:.0f} s; load average {load_before:.1f} at the start,"
        f" {os.getloadavg()[0]:.1f} at the end (the benchmark's own threads count there; above"
        " ~1 at the start, other work shared the CPUs)."
        " At each side's largest passing step:"
    )
    print(f"{'side':16} {'nodes':>6} {'x 1.26.1':>9} {'master ms/node-min':>19}"
          f" {'us/call':>8} {'master CPU':>11} {'generator CPU':>14}")  # fmt: skip
    for r in results:
        ratio = f"{r['nodes'] / base:.1f}x" if base else "-"
        print(
            f"{r['side']:16} {r['nodes']:6d} {ratio:>9}"
            f" {r.get('master_ms_per_node_minute', 0):19.1f}"
            f" {r.get('master_us_per_call', 0):8.0f}"
            f" {r.get('master_cpu_share', 0):11.2f}"
            f" {r.get('generator_cpu_share', 0):14.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
