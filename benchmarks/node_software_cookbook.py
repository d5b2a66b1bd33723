"""The first `slapos node software` of the corpus release "cookbook" (slapos.cookbook and
slapos.core from the package index), ours beside slapos.core 1.26.1's node, on this machine.

    .venv/bin/python benchmarks/node_software_cookbook.py [--runs 2]

Target: ours not slower than 1.1x upstream's. Buildout dominates, and the two nodes do not
give it the same work: buildout runs with the node's own interpreter, and the dists found on
its sys.path are not installed again. Upstream's interpreter has slapos.core and its
dependencies installed; ours has not, so with ours buildout also installs slapos.core and
about twenty more eggs, compiling netifaces. The script therefore also times the same
buildout run without any node (bootstrap + bin/buildout as ours runs them, from
tests/fixtures/grid_instance.py): ours minus that is what our node adds.

Each run gets a fresh software root owned by a user made for it (buildout never runs as
root) and its own master (our proxy); runs alternate between the two nodes.
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

from benchmarks.node_software import EXPOSE_PYENV, UPSTREAM  # noqa: E402
from slapos.grid.utils import software_hash  # noqa: E402
from tests.fixtures.grid import make_node  # noqa: E402
from tests.fixtures.grid_instance import build_software  # noqa: E402
from tests.fixtures.proxy import start_proxy  # noqa: E402

RELEASE = REPO / "tests" / "data" / "corpus" / "cookbook"


def node_command(flavour: str, cfg: Path) -> list[str]:
    if flavour == "ours":
        return [sys.executable, "-m", "slapos", "node", "software", "--cfg", str(cfg), "--now"]
    argv = [str(UPSTREAM.slapos), "node", "software", "--cfg", str(cfg), "--now"]
    if os.geteuid() == 0:  # the software user must reach upstream's interpreter under /root
        argv = ["unshare", "-m", "sh", "-c", EXPOSE_PYENV, "sh", *argv]
    return argv


def one_run(flavour: str, base: Path, url: str) -> float:
    """Wall time of one first build in a fresh node (flavour "buildout": no node at all)."""
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
        if flavour == "buildout":
            start = time.perf_counter()
            build_software(node.software_root, url, Path(sys.executable), user)
            return time.perf_counter() - start
        s = slap()
        s.initializeConnection(proxy.url)
        s.registerSupply().supply(url, computer_guid=proxy.computer_id)
        start = time.perf_counter()
        done = subprocess.run(node_command(flavour, node.config), capture_output=True, text=True,
                              check=False)  # fmt: skip
        elapsed = time.perf_counter() - start
        built = node.software_root / software_hash(url) / "instance.cfg"
        if done.returncode != 0 or not built.exists():  # upstream exits 0 on a failed build
            raise SystemExit(f"{flavour}: node software failed:\n{done.stderr[-3000:]}")
        return elapsed
    finally:
        proxy_gen.close()
        if user:
            subprocess.run(["userdel", user], check=False, capture_output=True)
            subprocess.run(["groupdel", user], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    corpus = Path(tempfile.mkdtemp(prefix="slcbsrc", dir="/tmp"))
    corpus.chmod(0o755)
    shutil.copytree(RELEASE, corpus / "cookbook")
    for path in [corpus / "cookbook", *(corpus / "cookbook").iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    url = str(corpus / "cookbook" / "software.cfg")
    times: dict[str, list[float]] = {"ours": [], "upstream 1.26.1": [], "buildout": []}
    try:
        for _ in range(args.runs):
            for flavour, name in (("ours", "ours"), ("upstream", "upstream 1.26.1"),
                                  ("buildout", "buildout")):  # fmt: skip
                base = Path(tempfile.mkdtemp(prefix="slcbench", dir="/tmp"))
                base.chmod(0o755)
                try:
                    times[name].append(one_run(flavour, base, url))
                finally:
                    shutil.rmtree(base, ignore_errors=True)
                print(f"{name}: {times[name][-1]:.1f}s", file=sys.stderr)
    finally:
        shutil.rmtree(corpus, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'first node software, cookbook':32}{'median':>9}   runs")
    for name, values in times.items():
        label = "buildout alone (ours, no node)" if name == "buildout" else name
        runs = " ".join(f"{v:.1f}" for v in values)
        print(f"{label:32}{median[name]:>8.1f}s   {runs}")
    print(f"ours / upstream: {median['ours'] / median['upstream 1.26.1']:.2f}x; "
          f"our node's own share: {median['ours'] - median['buildout']:+.1f}s")  # fmt: skip


if __name__ == "__main__":
    main()
