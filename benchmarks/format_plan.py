"""How long node format's planning takes, and how much memory, for many partitions.

    .venv/bin/python benchmarks/format_plan.py [PARTITIONS ...]

Plans a fresh node (every user, address, tap and file to create), then the same node once
formatted (nothing to change), against a simulated host: no root, nothing touched.
Target: linear in the partition count, under 5 s and 100 MB for 300 partitions (a big
node has a few hundred). Measured (2 cores): 100 -> 0.7 s, 300 -> 2.8 s, 1000 -> ~10 s;
half of it is xml_marshaller dumping and loading the computer description.
"""

from __future__ import annotations

import ipaddress
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slapos.format.config import FormatConfig
from slapos.format.host import HostState
from slapos.format.model import computer_from_dict, loads_xml
from slapos.format.netif import IfAddress, Link, NetworkState
from slapos.format.plan import plan_format
from tests.unit.format.test_plan import simulate


def measure(amount: int) -> None:
    config = FormatConfig(
        path=Path("/bench/slapos.cfg"), computer_id="COMP-1", master_url="http://x",
        instance_root=Path("/bench/srv"), software_root=Path("/bench/opt"),
        computer_xml=Path("/bench/slapos.xml"), partition_amount=amount, interface_name="eth0",
        ipv4_local_network=ipaddress.IPv4Network("10.0.0.0/16"), create_tap=True,
    )  # fmt: skip
    host = HostState(
        network=NetworkState({"eth0": Link("eth0", (IfAddress(6, "2001:db8::1", 48),)),
                              "lo": Link("lo")}),
        os_type="linux", python_version="3", slapos_version="0",
    )  # fmt: skip
    tracemalloc.start()
    start = time.perf_counter()
    first = plan_format(config, None, host, random.Random(1))
    fresh = time.perf_counter() - start
    after = simulate(host, first.actions)
    previous = computer_from_dict(loads_xml(after.files[str(config.computer_xml)], "x"), "x")
    start = time.perf_counter()
    second = plan_format(config, previous, after, random.Random(2))
    steady = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(
        f"{amount:5d} partitions: fresh plan {fresh:6.2f}s ({len(first.actions)} actions), "
        f"formatted node {steady:6.2f}s ({len(second.actions)} actions), peak {peak:.0f} MiB"
    )


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [10, 100, 1000]:
        measure(n)
