"""slapos.slap client cost per call: CPU microseconds per `OpenOrder.request(...)`.

A tiny in-process HTTP/1.1 server (one thread, keep-alive, raw socket: it costs the client
process as little as possible) answers every POST /requestComputerPartition with the same
~1 KB SoftwareInstance document, recorded from a real master (tests/data/wire). The client
side is the real library, as benchmarks/proxy_driver.py drives it:

    slap().registerOpenOrder().request(SR, title, partition_parameter_kw={...})

    .venv/bin/python benchmarks/slap_client.py [--calls 3000] [--repeat 3] [--profile]

Prints the client CPU per call (time.process_time of the whole process divided by the
calls, minus what the server thread used) and the wall-clock calls per second. The server
thread's own CPU is measured with time.thread_time and subtracted.

"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from pathlib import Path

import slapos.slap

SR = "http://sr.example.invalid/software.cfg"
TRAFFIC = Path(__file__).parents[1] / "tests" / "data" / "wire" / "upstream-1.26.1-traffic.json"


def answer_document() -> bytes:
    """The first requestComputerPartition answer upstream's proxy gave (~1.2 KB)."""
    for record in json.loads(TRAFFIC.read_text()):
        if record["path"] == "requestComputerPartition" and record["status"] == 200:
            return str(record["body"]).encode("utf-8")
    raise SystemExit(f"no requestComputerPartition answer in {TRAFFIC}")


class FixedServer:
    """Answers every request on a keep-alive connection with the same response."""

    def __init__(self, body: bytes) -> None:
        self.response = (
            b"HTTP/1.1 200 OK\r\n"
            b"Server: bench\r\n"
            b"Date: Thu, 26 Nov 2026 00:00:00 GMT\r\n"
            b"Content-Type: text/xml; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cpu = 0.0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._talk(connection)

    def _talk(self, connection: socket.socket) -> None:
        buffer = b""
        start = time.thread_time()
        try:
            while True:
                head_end = buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    data = connection.recv(65536)
                    if not data:
                        return
                    buffer += data
                    continue
                head = buffer[:head_end].lower()
                at = head.find(b"\r\ncontent-length:")
                length = 0
                if at >= 0:
                    end = head.find(b"\r\n", at + 2)
                    length = int(head[at + 17 : end if end >= 0 else len(head)])
                total = head_end + 4 + length
                while len(buffer) < total:
                    data = connection.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[total:]
                connection.sendall(self.response)
        finally:
            connection.close()
            self.cpu += time.thread_time() - start

    def close(self) -> None:
        self.listener.close()


def run(calls: int, url: str, server: FixedServer) -> tuple[float, float]:
    """(client CPU us per call, wall calls per second) for `calls` requests."""
    slap = slapos.slap.slap()
    slap.initializeConnection(url)
    order = slap.registerOpenOrder()
    order.request(SR, "warm-up", partition_parameter_kw={"i": "0"})  # connect, caches
    server_cpu = server.cpu
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        order.request(SR, f"instance{i}", partition_parameter_kw={"i": str(i)})
    cpu = time.process_time() - start_cpu
    wall = time.perf_counter() - start_wall
    slap._connection_helper.close()  # ends the server's connection, which adds its CPU
    deadline = time.monotonic() + 5
    while server.cpu == server_cpu and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu -= server.cpu - server_cpu
    return cpu / calls * 1e6, calls / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N runs")
    parser.add_argument("--profile", action="store_true", help="cProfile one run instead")
    args = parser.parse_args()

    server = FixedServer(answer_document())
    url = f"http://127.0.0.1:{server.port}/"
    try:
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            run(args.calls, url, server)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        results = [run(args.calls, url, server) for _ in range(args.repeat)]
    finally:
        server.close()
    cpu = min(r[0] for r in results)
    rate = max(r[1] for r in results)
    print(
        f"slap client: {args.calls} x OpenOrder.request, best of {args.repeat}: "
        f"{cpu:.0f} us client CPU per call, {rate:.0f} calls/s wall"
    )


if __name__ == "__main__":
    main()
