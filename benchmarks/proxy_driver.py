"""Benchmark client for benchmarks/proxy.py; runs under either side's Python.

Only the upstream-compatible `slapos.slap` API is used, so the same file drives
slapos.core 1.26.1's library (against its proxy) and ours (against ours).

    python proxy_driver.py URL COMPUTER MODE COUNT PREFIX
MODE: requests (COUNT new instances, then COUNT updates) | raw (the same with a bare
keep-alive HTTP client, to measure the proxy alone) | latency (COUNT full-info GETs,
then COUNT (update + GET) pairs). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

import slapos.slap

url, computer, mode, count, prefix = sys.argv[1:6]
count = int(count)
SR = "http://sr.example.invalid/software.cfg"
slap = slapos.slap.slap()
slap.initializeConnection(url)
order = slap.registerOpenOrder()
result = {"errors": 0, "partitions": {}}

# Concurrent drivers start their loops together (PROXY_BENCH_START_AT, a time.time()), so
# that the interpreter's start-up and imports are not counted as request time.
start_at = float(os.environ.get("PROXY_BENCH_START_AT") or 0)
if start_at:
    time.sleep(max(0.0, start_at - time.time()))
result["started_at"] = time.time()

if mode == "requests":
    start = time.perf_counter()
    for phase in ("new", "update"):
        for i in range(count):
            title = f"{prefix}{i}"
            params = {"i": str(i)} if phase == "new" else {"i": str(i), "v": "2"}
            try:
                partition = order.request(SR, title, partition_parameter_kw=params)
                result["partitions"].setdefault(title, partition.getId())
            except Exception as exc:  # counted, reported by the harness
                result["errors"] += 1
                result.setdefault("first_error", repr(exc))
    result["elapsed"] = time.perf_counter() - start
    result["ended_at"] = time.time()
    result["requests"] = 2 * count
elif mode == "raw":
    # the proxy alone: one keep-alive connection, documents written by hand
    import http.client
    from urllib.parse import urlencode, urlsplit

    host = urlsplit(url)
    connection = http.client.HTTPConnection(host.hostname, host.port)
    empty, none, false = (
        '<marshal><dictionary id="i2"/></marshal>',
        "<marshal><none/></marshal>",
        "<marshal><bool>0</bool></marshal>",
    )
    start = time.perf_counter()
    for i in range(2 * count):
        params = (
            '<marshal><dictionary id="i2"><string>i</string>'
            f"<string>{i}</string></dictionary></marshal>"
        )
        body = urlencode(
            {
                "software_release": SR,
                "software_type": "default",
                "partition_reference": f"{prefix}{i % count}",
                "partition_parameter_xml": params,
                "filter_xml": empty,
                "state": none,
                "shared_xml": false,
            }
        )
        connection.request(
            "POST",
            "/requestComputerPartition",
            body,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            result["errors"] += 1
    result["elapsed"] = time.perf_counter() - start
    result["requests"] = 2 * count
elif mode == "latency":
    helper = slap._connection_helper
    cached, fresh = [], []
    for _ in range(count):
        t = time.perf_counter()
        helper.GET("getFullComputerInformation", params={"computer_id": computer})
        cached.append(time.perf_counter() - t)
    for i in range(count):
        order.request(
            SR, f"{prefix}{i % 10}", partition_parameter_kw={"i": str(i % 10), "v": str(i)}
        )
        t = time.perf_counter()
        body = helper.GET("getFullComputerInformation", params={"computer_id": computer})
        fresh.append(time.perf_counter() - t)
    result.update(cached=sorted(cached), fresh=sorted(fresh), size=len(body))
print(json.dumps(result))
