"""slapos node register against a small HTTP server playing the master's web side."""

from __future__ import annotations

import http.server
import json
import stat
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from slapos.cli.context import CapturedContext, Context
from slapos.cli.main import main
from slapos.config import IniFile
from tests.fixtures.common import serve_http, tls_server_context

CERT = (
    "-----BEGIN CERTIFICATE-----\nSubject: CN=COMP-4242/emailAddress=x@y\n"
    "-----END CERTIFICATE-----\n"
)
KEY = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n"


class WebSide(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, str]]] = []
    mode = "ok"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        WebSide.requests.append(
            {"path": self.path, "token": self.headers.get("X-Access-Token", ""), **form}
        )
        if WebSide.mode == "forbidden":
            self.send_response(403)
            body = b"no"
        elif WebSide.mode == "in-use":
            self.send_response(500)
            body = b"Certificate still active."
        else:
            self.send_response(200)
            body = json.dumps({"certificate": CERT, "key": KEY}).encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    WebSide.requests = []
    WebSide.mode = "ok"
    with serve_http(WebSide) as served:
        yield served.url


def run(tmp_path: Path, *argv: str, stdin: str = "", euid: int = 0) -> tuple[int, CapturedContext]:
    ctx = Context.for_test(tmp_path, euid=euid, stdin=stdin)
    return main(["node", "register", *argv], ctx), ctx


def test_register_writes_the_configuration(tmp_path, web):
    cfg = tmp_path / "etc" / "slapos" / "slapos.cfg"
    rc, _ = run(
        tmp_path,
        "mynode",
        "--cfg",
        str(cfg),
        "--token",
        "T0K",
        "--master-url",
        "https://master.example",
        "--master-url-web",
        web,
        "--partition-number",
        "7",
        "--ipv4-local-network",
        "10.9.0.0/16",
        "--interface-name",
        "eth0",
        "--ipv6-interface",
        "eth1",
        "--create-tap",
    )
    assert rc == 0
    assert WebSide.requests == [
        {"path": "/Person_requestComputer", "token": "T0K", "title": "mynode"}
    ]
    d = cfg.parent
    ini = IniFile.read(cfg)
    assert ini.get("slapos", "computer_id") == "COMP-4242"
    assert ini.get("slapos", "master_url") == "https://master.example"
    assert ini.get("slapos", "key_file") == str(d / "ssl" / "key")
    assert ini.get("slapos", "cert_file") == str(d / "ssl" / "certificate")
    assert ini.get("slapos", "certificate_repository_path") == str(d / "ssl" / "partition_pki")
    assert ini.get("slapformat", "partition_amount") == "7"
    assert ini.get("slapformat", "ipv4_local_network") == "10.9.0.0/16"
    assert ini.get("slapformat", "interface_name") == "eth0"
    assert ini.get("slapformat", "ipv6_interface") == "eth1"
    assert ini.get("slapformat", "create_tap") == "True"
    assert (d / "ssl" / "key").read_text() == KEY
    assert (d / "ssl" / "certificate").read_text() == CERT
    for name in ("key", "certificate"):
        assert stat.S_IMODE((d / "ssl" / name).stat().st_mode) == 0o600
    for path in (d, d / "ssl", d / "ssl" / "partition_pki"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o711


def test_register_backs_up_an_existing_configuration(tmp_path, web):
    cfg = tmp_path / "etc" / "slapos.cfg"
    cfg.parent.mkdir()
    cfg.write_text("old one")
    (tmp_path / "etc.old").mkdir()  # taken: the next free name is used
    rc, _ = run(tmp_path, "n", "--cfg", str(cfg), "--token", "t", "--master-url-web", web)
    assert rc == 0
    assert (tmp_path / "etc.old.1" / "slapos.cfg").read_text() == "old one"
    assert "COMP-4242" in cfg.read_text()


def test_token_is_prompted(tmp_path, web):
    cfg = tmp_path / "etc" / "slapos.cfg"
    rc, ctx = run(tmp_path, "n", "--cfg", str(cfg), "--master-url-web", web, stdin="\n  \nabc\n")
    assert rc == 0
    assert WebSide.requests[0]["token"] == "abc"
    assert ctx.stdout.getvalue().count("Computer security token: ") == 3


@pytest.mark.parametrize(
    ("mode", "message"), [("forbidden", "check the token"), ("in-use", "already in use")]
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, web, mode, message):
    WebSide.mode = mode
    cfg = tmp_path / "etc" / "slapos.cfg"
    rc, ctx = run(tmp_path, "n", "--cfg", str(cfg), "--token", "t", "--master-url-web", web)
    assert rc == 1
    assert message in ctx.stderr.getvalue()
    assert not cfg.parent.exists()


def test_dry_run_contacts_nothing_and_writes_nothing(tmp_path, web):
    cfg = tmp_path / "etc" / "slapos.cfg"
    rc, _ = run(tmp_path, "n", "--cfg", str(cfg), "--token", "t", "--master-url-web", web, "-n")
    assert rc == 0
    assert WebSide.requests == [] and not cfg.parent.exists()


@pytest.mark.parametrize("option", [["--login", "me"], ["--password", "x"], ["--login-auth"]])
def test_obsolete_options_fail_clearly(tmp_path, option):
    rc, ctx = run(tmp_path, "n", "--token", "t", *option)
    assert rc == 2
    assert "obsolete" in ctx.stderr.getvalue()


def test_register_needs_root(tmp_path, web):
    rc, _ = run(tmp_path, "n", "--token", "t", "--master-url-web", web, euid=1000)
    assert rc == 5
    assert WebSide.requests == []


@pytest.fixture
def https_web(tmp_path: Path) -> Iterator[str]:
    """The web side over https, with a certificate no system CA signed."""
    from tests.unit.slap.test_tls import issue, make_ca

    cert, key = issue(tmp_path, make_ca(tmp_path, "private-ca"), "web", san=True)
    WebSide.requests = []
    WebSide.mode = "ok"
    with serve_http(WebSide, tls=tls_server_context(cert, key)) as served:
        yield served.url


def test_the_web_side_certificate_is_verified_before_the_token_is_sent(tmp_path, https_web):
    cfg = tmp_path / "etc" / "slapos.cfg"
    argv = ["mynode", "--cfg", str(cfg), "--token", "T0K", "--master-url-web", https_web]
    rc, _ = run(tmp_path, *argv)
    assert rc == 1
    assert WebSide.requests == []  # the token never left
    assert not cfg.exists()
    rc, _ = run(tmp_path, *argv, "--no-master-tls-verify")
    assert rc == 0
    assert [r["token"] for r in WebSide.requests] == ["T0K"]


def test_the_web_side_refusal_is_one_line(tmp_path, https_web):
    import subprocess
    import sys

    from tests.fixtures.common import REPO

    result = subprocess.run(
        [sys.executable, "-m", "slapos", "node", "register", "mynode", "--cfg",
         str(tmp_path / "slapos.cfg"), "--token", "T", "--master-url-web", https_web],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "could not be verified" in lines[0] and "--no-master-tls-verify" in lines[0]
