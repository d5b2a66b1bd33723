"""The `proxy` fixture serves the legacy API to upstream's library."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.upstream import RunningProxy, Upstream, formatted_computer_code


def test_upstream_library_formats_and_requests(upstream: Upstream, proxy: RunningProxy) -> None:
    result = upstream.python_code(
        formatted_computer_code(proxy)
        + textwrap.dedent(
            """
        import json
        p = slap.registerOpenOrder().request("http://sr/software.cfg", "root",
                                             partition_parameter_kw={"a": 1})
        print(json.dumps([p.getId(), p.getState(), p.getInstanceParameterDict()["a"]]))
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == ["slappart0", "started", "1"]


@pytest.mark.parametrize("workers", [1, 2])
def test_log_file_key_ipv6_and_clean_shutdown(tmp_path: Path, workers: int) -> None:
    import os
    import signal
    import subprocess
    import sys

    import requests

    from tests.fixtures.common import REPO, free_port, wait_for_port

    port = free_port("::1")
    log_file = tmp_path / "logs" / "proxy.log"
    config = tmp_path / "slapos-proxy.cfg"
    config.write_text(
        f"[slapos]\ncomputer_id = C\n[slapproxy]\nhost = ::1\nport = {port}\n"
        f"database_uri = {tmp_path}/db\nlog_file = {log_file}\nworkers = {workers}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "slapos", "proxy", "start", "--cfg", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, text=True,
    )  # fmt: skip
    try:
        wait_for_port("::1", port)
        with requests.Session() as session:  # keep-alive: two calls on one connection
            for _ in range(2):
                answer = session.get(f"http://[::1]:{port}/getRunId", timeout=10)
                assert answer.status_code == 200 and len(answer.text) == 32
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "slapos proxy stopped" in out
    text = log_file.read_text()
    assert '"GET /getRunId" 200' in text and "serving http://[::1]:" in text
