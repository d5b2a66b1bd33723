"""The first `slapos node software` of the corpus release "cookbook" (slapos.cookbook and
slapos.core from the package index), ours beside slapos.core 1.26.1's node, on this machine.

    .venv/bin/python benchmarks/node_software_cookbook.py [--runs 2] [--second]

Target: ours not slower than 1.1x upstream's. Buildout dominates, and the two nodes do not
give it the same work: buildout runs with the node's own interpreter, and takes the dists it
finds on that interpreter's sys.path as installed. Upstream's interpreter has slapos.core
and its dependencies; ours has not, so with ours buildout also downloads and installs
slapos.core and about twenty more eggs, compiling netifaces. The ratio of the two wall
times therefore measures the environments more than the nodes. What our node itself adds
is measured within each of its runs: its wall time minus the span of the build (from its
"bootstrapping" line to its "is available" line, read as they come with -v), which does
not depend on how loaded the machine is while the build runs. The CPU time (user + system)
of each node and every process it waited for is printed too: on a shared machine it moves
much less than wall time.

Each run gets a fresh software root owned by a user made for it (buildout never runs as
root) and its own master (our proxy); runs alternate between the two nodes. The eggs each
node had buildout install are counted.

With --second, each node then builds the same release supplied under a second URL (a copy
of it), the node's second release: our node finds the distributions in its download cache
(buildout still reads the index page of each, and installs each), upstream's downloads
them again. That line is extra: the target is about the first build.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.node_software import EXPOSE_PYENV, UPSTREAM  # noqa: E402
from slapos.grid.utils import software_hash  # noqa: E402
from tests.fixtures.grid import make_node  # noqa: E402
from tests.fixtures.proxy import start_proxy  # noqa: E402

RELEASE = REPO / "tests" / "data" / "corpus" / "cookbook"


def node_command(flavour: str, cfg: Path) -> list[str]:
    if flavour == "ours":
        return [sys.executable, "-m", "slapos", "node", "software", "--cfg", str(cfg), "--now"]
    argv = [str(UPSTREAM.slapos), "node", "software", "--cfg", str(cfg), "--now"]
    if os.geteuid() == 0:  # the software user must reach upstream's interpreter under /root
        argv = ["unshare", "-m", "sh", "-c", EXPOSE_PYENV, "sh", *argv]
    return argv


@dataclass
class Run:
    wall: float
    #: the span of the build, from our node's -v output (None for upstream's)
    span: float | None
    eggs: int
    #: CPU seconds (user + system) of the node and every process it waited for
    cpu: float
    #: the same release under a second URL on the same node (--second)
    second_wall: float | None = None
    second_cpu: float | None = None


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build(flavour: str, argv: list[str]) -> tuple[float, float, dict[str, float], int, str]:
    """One `node software`: (wall time, CPU time, marks of its -v output, exit code, output)."""
    marks: dict[str, float] = {}
    output: list[str] = []
    cpu = children_cpu()
    start = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if ": bootstrapping" in line:
                marks.setdefault("start", time.perf_counter())
            elif line.rstrip().endswith(" is available"):
                marks["end"] = time.perf_counter()
    elapsed = time.perf_counter() - start
    return elapsed, children_cpu() - cpu, marks, proc.returncode, "".join(output)


def one_run(flavour: str, base: Path, url: str, second: str | None = None) -> Run:
    """The first build of `url` in a fresh node, then (if given) of `second` on it."""
    from slapos.slap import slap

    proxy_gen = start_proxy(base / "proxy")
    proxy = next(proxy_gen)
    user = None
    try:
        node = make_node(base, proxy.url, proxy.computer_id)
        if os.geteuid() == 0:
            user = f"slcb{os.getpid() % 10000}{flavour[0]}"
            subprocess.run(["useradd", "-M", "-U", "-d", str(node.software_root), user], check=True)
            shutil.chown(node.software_root, user, user)
        s = slap()
        s.initializeConnection(proxy.url)
        s.registerSupply().supply(url, computer_guid=proxy.computer_id)
        argv = node_command(flavour, node.config) + (["-v"] if flavour == "ours" else [])
        run = None
        for supplied in (url, second):
            if supplied is None:
                continue
            if supplied != url:
                s.registerSupply().supply(supplied, computer_guid=proxy.computer_id)
            elapsed, cpu, marks, returncode, output = build(flavour, argv)
            software = node.software_root / software_hash(supplied)
            if returncode != 0 or not (software / "instance.cfg").exists():
                # (upstream's node exits 0 on a failed build)
                raise SystemExit(f"{flavour}: node software failed:\n{output[-3000:]}")
            if run is None:
                span = marks["end"] - marks["start"] if len(marks) == 2 else None
                run = Run(elapsed, span, len(list(software.glob("eggs/*/*.egg"))), cpu)
            else:
                run.second_wall, run.second_cpu = elapsed, cpu
        assert run is not None
        return run
    finally:
        proxy_gen.close()
        if user:
            subprocess.run(["userdel", user], check=False, capture_output=True)
            subprocess.run(["groupdel", user], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--second", action="store_true", help="then the release under a second URL, same node"
    )
    args = parser.parse_args()
    corpus = Path(tempfile.mkdtemp(prefix="slcbsrc", dir="/tmp"))
    corpus.chmod(0o755)
    shutil.copytree(RELEASE, corpus / "cookbook")
    for path in [corpus / "cookbook", *(corpus / "cookbook").iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    url = str(corpus / "cookbook" / "software.cfg")
    second = None
    if args.second:
        shutil.copytree(corpus / "cookbook", corpus / "cookbook-again")
        second = str(corpus / "cookbook-again" / "software.cfg")
    runs: dict[str, list[Run]] = {"ours": [], "upstream": []}
    try:
        for _ in range(args.runs):
            for flavour in runs:
                base = Path(tempfile.mkdtemp(prefix="slcbench", dir="/tmp"))
                base.chmod(0o755)
                try:
                    runs[flavour].append(one_run(flavour, base, url, second))
                finally:
                    shutil.rmtree(base, ignore_errors=True)
                print(f"{flavour}: {runs[flavour][-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(corpus, ignore_errors=True)
    wall = {f: statistics.median(r.wall for r in done) for f, done in runs.items()}
    cpu = {f: statistics.median(r.cpu for r in done) for f, done in runs.items()}
    print(f"{'first node software, cookbook':30}{'median':>8}  {'CPU':>7}  {'eggs':>5}   runs")
    for flavour, label in (("ours", "ours"), ("upstream", "upstream 1.26.1")):
        done = runs[flavour]
        walls = " ".join(f"{r.wall:.1f}" for r in done)
        eggs = done[0].eggs
        print(f"{label:30}{wall[flavour]:>7.1f}s  {cpu[flavour]:>6.1f}s  {eggs:>5}   {walls}")
    if args.second:
        print(f"{'second release, same node':30}{'median':>8}  {'CPU':>7}          runs")
        for flavour, label in (("ours", "ours"), ("upstream", "upstream 1.26.1")):
            again = [(r.second_wall, r.second_cpu or 0.0) for r in runs[flavour] if r.second_wall]
            walls = " ".join(f"{w:.1f}" for w, _ in again)
            median_wall = statistics.median(w for w, _ in again)
            median_cpu = statistics.median(c for _, c in again)
            print(f"{label:30}{median_wall:>7.1f}s  {median_cpu:>6.1f}s          {walls}")
    shares = [r.wall - r.span for r in runs["ours"] if r.span is not None]
    print(f"ours / upstream (different work, see above): {wall['ours'] / wall['upstream']:.2f}x"
          f" wall, {cpu['ours'] / cpu['upstream']:.2f}x CPU")  # fmt: skip
    print(f"our node's own share of its runs (wall - build): "
          f"{' '.join(f'{x:.2f}s' for x in shares)}")  # fmt: skip


if __name__ == "__main__":
    main()
