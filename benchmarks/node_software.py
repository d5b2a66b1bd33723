"""`slapos node software` with N installed releases and nothing to do (what cron runs every
few minutes), ours beside slapos.core 1.26.1's; and one real build of the test release.

    .venv/bin/python benchmarks/node_software.py [--releases 50] [--runs 7]

Target: a no-op run takes at most half of upstream's time (measured: 0.55 s vs 1.40 s for
50 releases; the engine's own share is ~0.1 s, one master call plus a stat per release, the
rest is Python start-up and imports of the slap library). Each implementation gets its own node and
its own upstream proxy as master. As root, software_root belongs to a user made for the run
(removed at the end), as buildout never runs as root.
"""

from __future__ import annotations

import argparse
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

from slapos.grid.utils import software_hash  # noqa: E402
from tests.fixtures.grid import make_node, materialise_sr  # noqa: E402
from tests.fixtures.upstream import DEFAULT_VENV, Upstream, start_upstream_proxy  # noqa: E402

UPSTREAM = Upstream(Path(os.environ.get("SLAPOS_UPSTREAM_VENV", DEFAULT_VENV)))
EXPOSE_PYENV = (
    'side=$(mktemp -d) && mount --bind /root/.pyenv "$side" && '
    "mount -t tmpfs -o mode=755 tmpfs /root && mkdir /root/.pyenv && "
    'mount --move "$side" /root/.pyenv && rmdir "$side" && exec "$@"'
)


def command(ours: bool, cfg: Path) -> list[str]:
    if ours:
        return [sys.executable, "-m", "slapos", "node", "software", "--cfg", str(cfg), "--now"]
    argv = [str(UPSTREAM.slapos), "node", "software", "--cfg", str(cfg), "--now"]
    if os.geteuid() == 0:
        argv = ["unshare", "-m", "sh", "-c", EXPOSE_PYENV, "sh", *argv]
    return argv


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed:\n{done.stderr[-2000:]}")
    return elapsed


def bench(ours: bool, base: Path, releases: int, runs: int) -> tuple[float, float]:
    from slapos.slap import slap

    proxy_gen = start_upstream_proxy(UPSTREAM, base / "proxy")
    proxy = next(proxy_gen)
    user = None
    try:
        source = materialise_sr(base / "src")
        node = make_node(base, proxy.url, proxy.computer_id)
        if os.geteuid() == 0:
            user = f"slsb{os.getpid() % 10000}{int(ours)}"
            subprocess.run(["useradd", "-M", "-U", "-d", str(node.software_root), user], check=True)
            shutil.chown(node.software_root, user, user)
        s = slap()
        s.initializeConnection(proxy.url)
        supply = s.registerSupply()
        url = str(source.path("success"))
        supply.supply(url, computer_guid=proxy.computer_id)
        build = timed(command(ours, node.config))
        for i in range(releases):  # installed releases: only their .completed is looked at
            other = f"{source.root}/installed-{i}/software.cfg"
            supply.supply(other, computer_guid=proxy.computer_id)
            (node.software_root / software_hash(other)).mkdir()
            (node.software_root / software_hash(other) / ".completed").write_text("x")
        noop = statistics.median(timed(command(ours, node.config)) for _ in range(runs))
        return build, noop
    finally:
        proxy_gen.close()
        if user:
            subprocess.run(["userdel", user], check=False, capture_output=True)
            subprocess.run(["groupdel", user], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--releases", type=int, default=50)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = {}
    for ours in (True, False):
        base = Path(tempfile.mkdtemp(prefix="slsbench", dir="/tmp"))
        base.chmod(0o755)
        try:
            results["ours" if ours else "upstream 1.26.1"] = bench(
                ours, base, args.releases, args.runs
            )
        finally:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{'':18}{'first build':>14}{f'no-op, {args.releases} releases':>26}")
    for name, (build, noop) in results.items():
        print(f"{name:18}{build:>13.2f}s{noop:>25.3f}s")


if __name__ == "__main__":
    main()
