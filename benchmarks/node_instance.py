"""`slapos node instance` with 20 up-to-date partitions and nothing to do: ours beside
slapos.core 1.26.1's.

    .venv/bin/python benchmarks/node_instance.py [--partitions 20] [--runs 7]

Target (issue 6): ours <= 0.2x upstream's time. Target (issue 18): ours with `--dry-run`
(the plan of the same run, nothing done) <= 1.2x ours without it; `--partitions 50
--no-upstream` measures that alone. Two nodes (one per implementation), each
with its own upstream proxy as master, deploy tests/data/sr-instance into every partition
(services running under supervisord), then `node instance` is timed RUNS times on each
(median). Partitions have no promise: as root, upstream's promise launcher cannot import
from its interpreter here (see tests/integration/test_node_instance_upstream.py).
As root, partitions belong to users made for the run and removed at the end.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.grid_instance import (  # noqa: E402
    build_software,
    instance_computer_dict,
    materialise_sr_instance,
)
from tests.fixtures.upstream import DEFAULT_VENV, Upstream, start_upstream_proxy  # noqa: E402

_SCRIPT = Path(sys.executable).with_name("slapos")
OURS_SLAPOS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "slapos"]
UPSTREAM = Upstream(Path(os.environ.get("SLAPOS_UPSTREAM_VENV", DEFAULT_VENV)))


def useradd(name: str, group: str, home: Path) -> None:
    subprocess.run(
        ["useradd", "-M", "-d", str(home), "-g", group, "-s", "/bin/sh", name],
        check=True,
        capture_output=True,
    )


def make_node(
    base: Path,
    master_url: str,
    software_root: Path,
    count: int,
    group: str | None,
    users: list[str],
    tag: str,
) -> Path:
    instance_root = base / "inst"
    instance_root.mkdir(parents=True)
    instance_root.chmod(0o755)
    for i in range(count):
        path = instance_root / f"slappart{i}"
        path.mkdir()
        path.chmod(0o750)
        if group:
            name = f"slb{tag}p{i}"
            useradd(name, group, path)
            users.append(name)
            shutil.chown(path, name, group)
    config = base / "slapos.cfg"
    config.write_text(
        f"[slapos]\ncomputer_id = local_computer\nmaster_url = {master_url}\n"
        f"software_root = {software_root}\ninstance_root = {instance_root}\n"
        f"root_check = false\ninstance_min_free_space = 0\n"
        f"pidfile_instance = {base}/cp.pid\n"
    )
    return config


def register(master_url: str, sr_url: str, count: int) -> None:
    from slapos.slap import slap, wire

    s = slap()
    s.initializeConnection(master_url, timeout=10)
    s.registerComputer("local_computer").updateConfiguration(
        wire.dumps(instance_computer_dict("local_computer", count))
    )
    s.registerSupply().supply(sr_url, "local_computer")
    for i in range(count):
        s.registerOpenOrder().request(
            sr_url, f"bench{i}", partition_parameter_kw={"promise": "none"}
        )


def timed(argv: list[str], runs: int) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAPOS_")}
    times = []
    code = 0
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        times.append(time.perf_counter() - start)
        code = done.returncode
        if code not in (0,):
            print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
    return statistics.median(times), code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of one run of ours"
    )
    parser.add_argument(
        "--no-upstream", action="store_true", help="only ours, with and without --dry-run"
    )
    args = parser.parse_args()
    if not args.no_upstream and not UPSTREAM.slapos.exists():
        print(f"upstream not installed at {UPSTREAM.venv}", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="slb", dir="/tmp"))
    base.chmod(0o755)
    users: list[str] = []
    group = None
    proxies = []
    configs: dict[str, Path] = {}
    try:
        sr_url = str(materialise_sr_instance(base / "sr"))
        software_root = base / "soft"
        software_root.mkdir()
        software_user = None
        if os.geteuid() == 0:
            group = f"slb{os.getpid() % 100000}"
            subprocess.run(["groupadd", group], check=True, capture_output=True)
            software_user = group + "sw"
            useradd(software_user, group, software_root)
            users.append(software_user)
            shutil.chown(software_root, software_user, group)
        print("building the software release ...", file=sys.stderr)
        build_software(software_root, sr_url, Path(sys.executable), software_user)
        for name in ("ours",) if args.no_upstream else ("upstream", "ours"):
            proxy = start_upstream_proxy(UPSTREAM, base / f"master-{name}")
            master = next(proxy)
            proxies.append(proxy)
            register(master.url, sr_url, args.partitions)
            configs[name] = make_node(
                base / name,
                master.url,
                software_root,
                args.partitions,
                group,
                users,
                name[0] + str(os.getpid() % 1000),
            )
        commands = {
            "upstream": [str(UPSTREAM.slapos), "node", "instance", "--now", "--cfg"],
            # What users run: the console script, as on upstream's side.
            "ours": [*OURS_SLAPOS, "node", "instance", "--now", "--cfg"],
        }
        if args.no_upstream:
            del commands["upstream"]
        # Installed, both sides have their byte code compiled (pip does it); a checkout run
        # with PYTHONDONTWRITEBYTECODE set would recompile every edited module on each run.
        compileall.compile_dir(str(REPO / "slapos"), quiet=1)
        for name, argv in commands.items():
            print(f"deploying {args.partitions} partitions with {name} ...", file=sys.stderr)
            _, code = timed([*argv, str(configs[name])], 1)
            if code != 0:
                print(f"{name}: first deployment failed (exit {code})", file=sys.stderr)
                return 1
        # The dry run is timed beside the real runs, not deployed first (it writes nothing).
        timed_commands = {
            **commands,
            "ours-dry": [*OURS_SLAPOS, "node", "instance", "--dry-run", "--cfg"],
        }
        configs["ours-dry"] = configs["ours"]
        # Interleaved runs, so that a busy machine slows both sides alike.
        samples: dict[str, list[float]] = {name: [] for name in timed_commands}
        codes: dict[str, int] = {}
        for _ in range(args.runs):
            for name, argv in timed_commands.items():
                seconds, codes[name] = timed([*argv, str(configs[name])], 1)
                samples[name].append(seconds)
        results = {
            name: (statistics.median(times), min(times), codes[name])
            for name, times in samples.items()
        }
        if args.profile:
            out = base / "prof"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cProfile",
                    "-o",
                    str(out),
                    "-m",
                    "slapos",
                    "node",
                    "instance",
                    "--now",
                    "--cfg",
                    str(configs["ours"]),
                ],
                capture_output=True,
                check=False,
            )
            import pstats

            pstats.Stats(str(out)).sort_stats("cumulative").print_stats(35)
        ours, dry = results["ours"], results["ours-dry"]
        print(f"{args.partitions} up-to-date partitions, {args.runs} runs each")
        print(f"{'':10} {'median s':>10} {'min s':>8} {'exit':>5}")
        for name, (median, fastest, code) in results.items():
            print(f"{name:10} {median:10.3f} {fastest:8.3f} {code:5d}")
        dry_ratio = dry[0] / ours[0]
        print(
            f"ratio dry run/real no-op run: median {dry_ratio:.2f}, best "
            f"{dry[1] / ours[1]:.2f}  (target <= 1.20)"
        )
        if args.no_upstream:
            return 0 if dry_ratio <= 1.2 else 1
        up = results["upstream"]
        ratio = ours[0] / up[0]
        print(
            f"ratio ours/upstream: median {ratio:.2f}, best {ours[1] / up[1]:.2f}  (target <= 0.20)"
        )
        return 0 if ratio <= 0.2 and dry_ratio <= 1.2 else 1
    finally:
        from slapos.grid import supervisor

        for name in set(configs) - {"ours-dry"}:
            with contextlib.suppress(Exception):
                supervisor.shutdown(base / name / "inst")
        for proxy in proxies:
            next(proxy, None)
        for user in users:
            subprocess.run(["userdel", user], capture_output=True, check=False)
        if group:
            subprocess.run(["groupdel", group], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
