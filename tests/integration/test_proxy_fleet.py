"""Two proxy processes on one database (a sqlite file, or PostgreSQL) behave as one master:
no partition handed out twice, what one commits is what the other answers at once, and
nothing acknowledged is lost when one of them is SIGKILLed mid-burst.

Each runs with both processes served by gunicorn, and with one served by granian and the
other by gunicorn (the granian one is the one killed): the servers mix on one database,
and granian's processes keep the same promises."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from slapos.slap.marshal import loads
from tests.fixtures.burst import BURST
from tests.fixtures.common import REPO, wait_for
from tests.fixtures.proxy import (
    BACKENDS,
    backend_uri,
    load_partitions,
    proxy_pid,
    request_form,
    start_proxy,
)
from tests.fixtures.upstream import RunningProxy

#: (backend, first process's server, second's); None: gunicorn (or $SLAPOS_TEST_HTTP_SERVER)
SETUPS = [
    *((backend, None, None) for backend in BACKENDS),
    *((backend, "granian", "gunicorn") for backend in BACKENDS),
]


@pytest.fixture(params=SETUPS, ids=lambda s: s[0] if s[1] is None else f"{s[0]}-{s[1]}+{s[2]}")
def two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[RunningProxy]]:
    """Two `slapos proxy start` processes, each on its own port, on the same database."""
    backend, *servers = request.param
    uri = backend_uri(request, backend) or str(tmp_path / "shared.db")
    first = start_proxy(tmp_path / "a", database_uri=uri, http_server=servers[0])
    second = start_proxy(tmp_path / "b", database_uri=uri, http_server=servers[1])
    try:
        proxies = [next(first), next(second)]
        for proxy, server in zip(proxies, servers, strict=True):
            if server is not None:
                assert f"({server}, " in proxy.log.read_text(), f"{proxy.url} is not {server}"
        yield proxies
    finally:
        next(second, None)
        next(first, None)


def full(proxy: RunningProxy) -> dict[str, Any]:
    answer = requests.get(
        f"{proxy.url}/getFullComputerInformation", params={"computer_id": proxy.computer_id},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    computer = loads(answer.text)
    return {
        "software": [
            r.state["_software_release"] for r in computer.state["_software_release_list"]
        ],
        "partitions": {
            p.args[1]: p.state.get("_parameter_dict", {})
            for p in computer.state["_computer_partition_list"]
        },
    }  # fmt: skip


def test_no_partition_is_handed_out_twice(two: list[RunningProxy]) -> None:
    load_partitions(two[0].url, two[0].computer_id, 24)
    barrier = threading.Barrier(8)
    results: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        session = requests.Session()
        barrier.wait(timeout=30)
        for k in range(6):
            for title in (f"own{index}-{k}", "Same"):
                proxy = two[(index + k) % 2]
                answer = session.post(
                    f"{proxy.url}/requestComputerPartition", data=request_form(title), timeout=60
                )
                partition = ""
                if answer.status_code == 200:
                    partition = loads(answer.text).state["slap_computer_partition_id"]
                with lock:
                    results.append((title, answer.status_code, partition))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 96
    statuses = {status for _, status, _ in results}
    assert statuses <= {200, 404}, results
    by_title: dict[str, set[str]] = {}
    for title, status, partition in results:
        if status == 200:
            by_title.setdefault(title, set()).add(partition)
    assert all(len(found) == 1 for found in by_title.values()), "a title got two partitions"
    partitions = [next(iter(found)) for found in by_title.values()]
    assert len(partitions) == len(set(partitions)) == 24, "a partition was handed out twice"
    # both processes read the same allocation
    for proxy in two:
        busy = {p: d["instance_title"] for p, d in full(proxy)["partitions"].items() if d}
        assert busy == {next(iter(found)): title for title, found in by_title.items()}


def test_what_one_process_commits_the_other_answers_at_once(two: list[RunningProxy]) -> None:
    a, b = two
    load_partitions(a.url, a.computer_id, 4)
    for step in range(20):
        writer, reader = (a, b) if step % 2 == 0 else (b, a)
        full(reader)  # the reader's cached answer, about to be stale
        url = f"http://sr.example.invalid/{step}.cfg"
        supplied = requests.post(
            f"{writer.url}/supplySupply",
            data={"url": url, "computer_id": writer.computer_id, "state": "available"},
            timeout=30,
        )
        assert supplied.status_code == 200
        assert url in full(reader)["software"], f"step {step}: the other process answered stale"
    # the partitions' addresses: cached by the process that requests, changed by the other
    first = loads(
        requests.post(f"{a.url}/requestComputerPartition", data=request_form("X"), timeout=30).text
    )
    assert list(map(tuple, first.state["ip_list"])) == [("tap0", "10.0.0.1")]
    load_partitions(b.url, b.computer_id, 4, network=9)
    again = loads(
        requests.post(f"{a.url}/requestComputerPartition", data=request_form("X"), timeout=30).text
    )
    assert list(map(tuple, again.state["ip_list"])) == [("tap0", "10.9.0.1")], (
        "stale addresses after a reformat"
    )
    assert full(a) == full(b)


def test_sigkill_of_one_process_loses_nothing_acknowledged(
    two: list[RunningProxy], tmp_path: Path
) -> None:
    a, b = two
    load_partitions(a.url, a.computer_id, 200)
    logs = [tmp_path / f"burst{k}.log" for k in range(4)]
    bursts = []
    for k, log in enumerate(logs):
        target = two[k % 2]
        with open(log, "w") as out:
            bursts.append(subprocess.Popen(
                [sys.executable, "-c", BURST, target.url, f"b{k}-", str(REPO), "100000", "40"],
                stdout=out, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
    try:
        wait_for(lambda: all(len(log.read_text().splitlines()) > 60 for log in logs), 120,
                 "acknowledged requests through both processes")  # fmt: skip
        # every process of it at once (granian's and gunicorn's workers would otherwise
        # stop gracefully once their main process is gone)
        os.killpg(os.getpgid(proxy_pid(a)), signal.SIGKILL)
        bursts[0].wait(timeout=30)
        bursts[2].wait(timeout=30)
        # the survivor keeps serving its clients
        size = len(logs[1].read_text().splitlines())
        wait_for(lambda: len(logs[1].read_text().splitlines()) > size + 20, 60, "more answers")
    finally:
        for burst in bursts:
            if burst.poll() is None:
                burst.kill()
                burst.wait()
    acknowledged: dict[str, tuple[str, int]] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                acknowledged[parts[0]] = (parts[1], int(parts[2]))
    assert len(acknowledged) >= 4 * 40 - 10
    partitions = full(b)["partitions"]
    for title, (partition, i) in acknowledged.items():
        parameters = partitions[partition]
        assert parameters["instance_title"] == title
        assert int(parameters["i"]) >= i, "an acknowledged update was lost"
