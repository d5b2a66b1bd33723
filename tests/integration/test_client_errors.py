"""Bad input and broken masters: one clear line, documented exit code, bounded time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from tests.fixtures.common import free_port

SR = "https://example.invalid/software/demo/software.cfg"


def run(tmp_path: Path, master_url: str, *argv: str, timeout: int = 2) -> tuple[int, str, str]:
    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {master_url}\ntimeout = {timeout}\n")
    ctx = Context.for_test(tmp_path)
    code = main([*argv, "--cfg", str(cfg)], ctx=ctx)
    return code, ctx.stdout.getvalue(), ctx.stderr.getvalue()


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if " ERROR " in line]


@pytest.mark.parametrize(
    "argv",
    [
        ("request", "inst", SR),
        ("supply", SR, "COMP-1"),
        ("remove", SR, "COMP-1"),
    ],
)
def test_unreachable_master(tmp_path, argv):
    start = time.monotonic()
    code, out, err = run(tmp_path, f"http://127.0.0.1:{free_port()}", *argv)
    assert code == 1
    assert out == ""
    [line] = error_lines(err)
    assert "cannot connect to master http://127.0.0.1:" in line
    assert "Traceback" not in err
    assert time.monotonic() - start < 10


def test_unreachable_master_rest_commands_retry_a_bounded_time(tmp_path):
    cfg = tmp_path / "client.cfg"
    url = f"http://127.0.0.1:{free_port()}"
    cfg.write_text(f"[slapos]\nmaster_url = {url}\nmaster_rest_url = {url}/hateoas\ntimeout = 1\n")
    ctx = Context.for_test(tmp_path)
    start = time.monotonic()
    assert main(["service", "list", "--cfg", str(cfg)], ctx=ctx) == 1
    assert time.monotonic() - start < 10
    assert len(error_lines(ctx.stderr.getvalue())) == 1


def test_wrong_url_path(tmp_path, fake_master):
    code, _, err = run(tmp_path, fake_master.url + "/not/a/master", "request", "inst", SR)
    assert code == 1
    [line] = error_lines(err)
    assert "answered POST requestComputerPartition with HTTP 404" in line


def test_server_error(tmp_path, fake_master):
    fake_master.routes["/requestComputerPartition"] = (500, "<p>Internal Server Error</p>")
    code, _, err = run(tmp_path, fake_master.url, "request", "inst", SR)
    assert code == 1
    [line] = error_lines(err)
    assert "HTTP 500" in line and fake_master.url in line


def test_malformed_answer(tmp_path, fake_master):
    fake_master.routes["/requestComputerPartition"] = (200, "<html><body>hello</body></html>")
    code, _, err = run(tmp_path, fake_master.url, "request", "inst", SR)
    assert code == 1
    [line] = error_lines(err)
    assert "malformed document" in line and "requestComputerPartition" in line


def test_not_ready_exit_2(tmp_path, fake_master):
    fake_master.routes["/requestComputerPartition"] = (408, "")
    code, out, err = run(tmp_path, fake_master.url, "request", "inst", SR)
    assert code == 2
    assert "Master is provisioning it" in err
    code, out, err = run(tmp_path, fake_master.url, "request", "inst", SR, "--format", "json")
    assert code == 2
    assert '"ready": false' in out


def test_slow_master_times_out(tmp_path, fake_master):
    fake_master.delay = 5
    fake_master.routes["/supplySupply"] = (200, "ok")
    start = time.monotonic()
    code, _, err = run(tmp_path, fake_master.url, "supply", SR, "COMP-1", timeout=1)
    assert code == 1
    assert "did not answer POST supplySupply within 1.0s" in err
    assert time.monotonic() - start < 4


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (("--parameters", "novalue"), 1, "'novalue' is not of the form key=value"),
        (("--parameters", "a=1", "a=2"), 1, "multiple values provided for the same key 'a'"),
        (("--node", "x"), 1, "--node: 'x' is not of the form key=value"),
        (("--parameters-file", "/nonexistent/p.json"), 2, "cannot read /nonexistent/p.json"),
        (("--parameters-file", "{dir}"), 2, "cannot read"),
        (("--parameters-file", "{bad_json}"), 2, "is not valid"),
        (("--parameters-file", "{bad_yaml}"), 2, "is not valid"),
        (("--parameters-file", "{bad_xml}"), 2, "is not valid"),
        (("--parameters-file", "{dated}"), 2, "cannot be sent as JSON"),
    ],
)
def test_bad_parameters(tmp_path, fake_master, argv, code, message):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    (tmp_path / "bad.xml").write_text("<instance><parameter")
    (tmp_path / "dated.yaml").write_text("when: 2024-01-01\n")
    files = {
        "dir": str(tmp_path),
        "bad_json": str(tmp_path / "bad.json"),
        "bad_yaml": str(tmp_path / "bad.yaml"),
        "bad_xml": str(tmp_path / "bad.xml"),
        "dated": str(tmp_path / "dated.yaml"),
    }
    argv = tuple(a.format(**files) for a in argv)
    got, _out, err = run(tmp_path, fake_master.url, "request", "inst", SR, *argv)
    assert got == code
    [line] = error_lines(err)
    assert message in line
    assert fake_master.calls("/requestComputerPartition") == []


def test_missing_config(tmp_path):
    ctx = Context.for_test(tmp_path)
    code = main(["request", "inst", SR, "--cfg", str(tmp_path / "none.cfg")], ctx=ctx)
    assert code == 1
    assert "Traceback" not in ctx.stderr.getvalue()


def test_real_process_prints_no_traceback(tmp_path):
    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = http://127.0.0.1:{free_port()}\ntimeout = 2\n")
    result = subprocess.run(  # noqa: PLW1510 - the status is asserted
        [sys.executable, "-m", "slapos", "request", "inst", SR, "--cfg", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot connect to master" in result.stderr
