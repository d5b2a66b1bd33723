"""`slapos proxy start` with `http_server = granian`: what is granian's own.

The HTTP behaviour both servers share (framing, limits, deadlines, memory, SIGTERM,
several workers) is tested on both in test_proxy_http.py; here: errors at start-up, the
worker processes (restarted when one dies, stopped when the main process is gone), and
what the log shows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.common import REPO, free_port, wait_for
from tests.fixtures.proxy import proxy_pid, start_proxy
from tests.fixtures.upstream import write_proxy_config

GRANIAN = "http_server = granian\n"


def _start(tmp_path: Path, extra: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
    """`slapos proxy start` run to its end (a start-up error)."""
    config, _ = write_proxy_config(tmp_path / "proxy", port or free_port(), extra_config=extra)
    return subprocess.run(
        [sys.executable, "-m", "slapos", "proxy", "start", "--cfg", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
    )


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def _get(port: int, path: str = "/getRunId") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_an_address_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _start(tmp_path, GRANIAN, port)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        f"ERROR cannot listen on 127.0.0.1:{port}: Address already in use"
    ), done.stderr


def test_tls_with_granian_is_refused_in_one_line(tmp_path: Path) -> None:
    done = _start(tmp_path, GRANIAN + "tls_certificate = /nowhere.crt\ntls_key = /nowhere.key\n")
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "http_server = granian cannot serve TLS" in lines[0]
    assert "granian does not give the client's certificate to the application" in lines[0]


def test_an_unknown_server_is_refused_in_one_line(tmp_path: Path) -> None:
    done = _start(tmp_path, "http_server = nginx\n")
    assert done.returncode == 1, done
    assert done.stderr.strip().endswith(
        "[slapproxy] http_server must be gunicorn or granian, got 'nginx'"
    ), done.stderr


def test_the_log_names_granian_and_shows_none_of_its_chatter(tmp_path: Path) -> None:
    running = start_proxy(tmp_path / "proxy", extra_config=GRANIAN)
    proxy = next(running)
    try:
        port = int(proxy.url.rsplit(":", 1)[1])
        assert _get(port).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: '"GET /getRunId" 200 32' in proxy.log.read_text(), 10, "access line")
    finally:
        next(running, None)
    # granian's start-up messages and its thread-count advice are DEBUG lines: not here
    lines = [line.split(" INFO ", 1)[1] for line in proxy.log.read_text().splitlines()]
    assert len(lines) == 4, lines
    assert lines[0].startswith(f"slapos proxy serving {proxy.url} (granian, 1 process x 8 ")
    assert lines[1].startswith("web panel: ")
    assert lines[2].startswith('127.0.0.1 "GET /getRunId" 200 32 ')
    assert lines[3] == "slapos proxy stopped"


def test_a_worker_that_dies_is_restarted(tmp_path: Path) -> None:
    running = start_proxy(tmp_path / "proxy", extra_config=GRANIAN + "workers = 2\n")
    proxy = next(running)
    try:
        port = int(proxy.url.rsplit(":", 1)[1])
        pid = proxy_pid(proxy)
        wait_for(lambda: len(_children(pid)) == 2, 10, "two workers")
        first = _children(pid)
        run_id = _get(port).split(b"\r\n\r\n", 1)[1]
        os.kill(first[0], signal.SIGKILL)
        wait_for(
            lambda: len(_children(pid)) == 2 and first[0] not in _children(pid),
            20,
            "a new worker",
        )
        for _ in range(10):  # both workers answer, with the master's one run id
            assert _get(port).split(b"\r\n\r\n", 1)[1] == run_id
    finally:
        next(running, None)


def test_workers_stop_when_the_main_process_is_gone(tmp_path: Path) -> None:
    running = start_proxy(tmp_path / "proxy", extra_config=GRANIAN + "workers = 2\n")
    proxy = next(running)
    try:
        pid = proxy_pid(proxy)
        wait_for(lambda: len(_children(pid)) == 2, 10, "two workers")
        workers = _children(pid)
        os.kill(pid, signal.SIGKILL)

        def gone() -> bool:  # exited (a zombie until init reaps it)
            return all(_state(w) in ("", "Z") for w in workers)

        started = time.monotonic()
        wait_for(gone, 15, "the orphaned workers' stop")
        assert time.monotonic() - started < 10
    finally:
        next(running, None)


def test_the_servers_environment_is_not_read_as_request_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # granian starts each environ from os.environ: HTTP_X_FORWARDED_PROTO there would
    # look like a client's X-Forwarded-Proto, and CONTENT_LENGTH like a body's length
    monkeypatch.setenv("HTTP_X_FORWARDED_PROTO", "https")
    monkeypatch.setenv("CONTENT_LENGTH", "5")
    running = start_proxy(tmp_path / "proxy", extra_config=GRANIAN)
    proxy = next(running)
    try:
        port = int(proxy.url.rsplit(":", 1)[1])
        answer = _get(port, "/getHateoasUrl")
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.split(b"\r\n\r\n", 1)[1] == b"http://x/hateoas/"
    finally:
        next(running, None)
