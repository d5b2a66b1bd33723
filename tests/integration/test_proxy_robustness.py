"""Concurrency and crash safety of our proxy, with real processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import requests

from slapos.slap.marshal import loads
from tests.fixtures.burst import BURST
from tests.fixtures.common import REPO, wait_for
from tests.fixtures.proxy import load_partitions, proxy_pid, start_proxy
from tests.fixtures.upstream import RunningProxy, Upstream

SR = "http://sr.example.invalid/software.cfg"


CLIENT = textwrap.dedent(
    """
    import json, os, sys, time
    import slapos.slap
    url, index, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    slap = slapos.slap.slap()
    slap.initializeConnection(url)
    order = slap.registerOpenOrder()
    open(go + "-ready-%d" % index, "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
    result = {}
    for title in ["own%d-%d" % (index, k) for k in range(3)] + ["Same"]:
        result[title] = order.request("http://sr.example.invalid/software.cfg", title).getId()
    print(json.dumps(result))
    """
)


def test_sixteen_clients_at_once(upstream: Upstream, proxy: RunningProxy, tmp_path: Path) -> None:
    load_partitions(proxy.url, proxy.computer_id, 64)
    go = tmp_path / "go"
    clients = [
        subprocess.Popen(
            [str(upstream.python), "-P", "-c", CLIENT, proxy.url, str(i), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(16)
    ]
    try:
        wait_for(lambda: len(list(tmp_path.glob("go-ready-*"))) == 16, 120, "16 ready clients")
        go.touch()
        outputs = [c.communicate(timeout=120) for c in clients]
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
    answers: dict[str, str] = {}
    same = set()
    for (out, err), client in zip(outputs, clients, strict=True):
        assert client.returncode == 0, err[-2000:]
        for title, partition in json.loads(out).items():
            if title == "Same":
                same.add(partition)
            else:
                answers[title] = partition
    assert len(answers) == 48
    assert len(same) == 1, "one instance title must map to one partition"
    given = [*answers.values(), *same]
    assert len(set(given)) == len(given) == 49, "a partition was handed out twice"
    with sqlite3.connect(proxy.database) as conn:
        busy = conn.execute("SELECT count(*) FROM partition18 WHERE slap_state='busy'").fetchone()
    assert busy[0] == 49


def test_sigkill_during_a_burst_loses_nothing_acknowledged(tmp_path: Path) -> None:
    directory = tmp_path / "proxy"
    first = start_proxy(directory)
    proxy = next(first)
    load_partitions(proxy.url, proxy.computer_id, 300)
    logs = [tmp_path / f"burst{k}.log" for k in range(3)]
    bursts = []
    for k, log in enumerate(logs):
        with open(log, "w") as out:
            bursts.append(subprocess.Popen(
                [sys.executable, "-c", BURST, proxy.url, f"b{k}-", str(REPO), "10000", "80"],
                stdout=out, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
    try:
        wait_for(lambda: all(len(log.read_text().splitlines()) > 100 for log in logs), 60,
                 "acknowledged requests")  # fmt: skip
        # every process of it at once (its workers would otherwise stop gracefully once
        # their main process is gone)
        os.killpg(os.getpgid(proxy_pid(proxy)), signal.SIGKILL)
        for burst in bursts:
            burst.wait(timeout=30)
    finally:
        for burst in bursts:
            if burst.poll() is None:
                burst.kill()
                burst.wait()
        next(first, None)
    acknowledged: dict[str, tuple[str, int]] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                acknowledged[parts[0]] = (parts[1], int(parts[2]))
    assert len(acknowledged) >= 100
    with sqlite3.connect(proxy.database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    second = start_proxy(directory, port=int(proxy.url.rsplit(":", 1)[1]))
    restarted = next(second)
    try:
        for title, (partition, i) in acknowledged.items():
            answer = requests.get(
                f"{restarted.url}/registerComputerPartition",
                params={"computer_reference": restarted.computer_id,
                        "computer_partition_reference": partition}, timeout=10,
            )  # fmt: skip
            state = loads(answer.text).state
            assert state["_parameter_dict"]["instance_title"] == title
            assert int(state["_parameter_dict"]["i"]) >= i, "an acknowledged update was lost"
    finally:
        next(second, None)
