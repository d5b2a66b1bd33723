"""slapos.slap speed: wire codec on a big node document, and calls per second over one
keep-alive session against a local HTTP server.

    .venv/bin/python benchmarks/slap_wire.py [--partitions 200] [--calls 500]

Targets: decoding getFullComputerInformation for 200 busy partitions in < 0.5 s (slapgrid
does it once per run); > 300 small calls/s to a local master (keep-alive, no reconnect).

Measured (2 cores, 2026-11): 1.07 MB document, decode 0.15 s, encode 0.18 s; 400-800
POST/s over one TCP connection to a local server; GET getFullComputerInformation (empty
computer) 140/s against 1.26.1's proxy, 370/s against ours.
"""

from __future__ import annotations

import argparse
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slapos.slap import ComputerPartition, SoftwareRelease, slap, wire
from slapos.slap.slap import Computer


def big_computer(partitions: int) -> str:
    computer = Computer("COMP-BENCH")
    plist = []
    for i in range(partitions):
        p = ComputerPartition("COMP-BENCH", f"slappart{i}")
        p._instance_guid = f"SOFTINST-{i}"
        p._requested_state = "started"
        p._software_release_document = SoftwareRelease("https://example.invalid/sr.cfg", "COMP")
        p._parameter_dict = {
            "ip_list": [("slaptap", f"10.0.{i // 250}.{i % 250}"), ("slaptap", f"fd46::{i:x}")],
            "slave_instance_list": [
                {"slave_reference": f"SHARED-{i}-{j}", "url": "http://x"} for j in range(5)
            ],
            "timestamp": str(time.time()),
            **{f"param{k}": "value & <xml>" * 3 for k in range(20)},
        }
        p._connection_dict = {f"k{k}": "v" for k in range(10)}
        plist.append(p)
    computer._computer_partition_list = plist
    computer._software_release_list = [
        SoftwareRelease(f"https://e.invalid/{i}.cfg", "C") for i in range(20)
    ]
    return wire.dumps(computer)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes
    connections = 0

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        Handler.connections += 1

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"Ignored")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=200)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--master", help="also time GET calls against this running master")
    parser.add_argument("--computer-id", default="local_computer", help="a computer of --master")
    args = parser.parse_args()

    document = big_computer(args.partitions)
    start = time.perf_counter()
    decoded = wire.loads(document)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    assert wire.dumps(decoded) == document
    encode = time.perf_counter() - start
    print(f"document: {len(document) / 1e6:.2f} MB for {args.partitions} partitions")
    print(f"decode: {decode:.3f} s   encode: {encode:.3f} s")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s = slap()
    s.initializeConnection(f"http://127.0.0.1:{server.server_address[1]}")
    partition = s.registerComputerPartition("COMP-BENCH", "slappart0")
    start = time.perf_counter()
    for _ in range(args.calls):
        partition.started()
    elapsed = time.perf_counter() - start
    print(
        f"{args.calls} POST started: {args.calls / elapsed:.0f} calls/s over "
        f"{Handler.connections} TCP connection(s)"
    )
    server.shutdown()

    if args.master:
        s = slap()
        s.initializeConnection(args.master)
        start = time.perf_counter()
        for _ in range(args.calls):
            s.registerComputer(args.computer_id).getComputerPartitionList()
        elapsed = time.perf_counter() - start
        print(
            f"{args.calls} GET getFullComputerInformation to {args.master}: "
            f"{args.calls / elapsed:.0f} calls/s"
        )


if __name__ == "__main__":
    main()
