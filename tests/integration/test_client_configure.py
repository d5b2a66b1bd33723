"""`configure client` and `computer token` against a local server playing the master's web side."""

from __future__ import annotations

import json
import stat

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.config import load_client_config
from tests.fixtures.common import serve_http, tls_server_context

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def configure(tmp_path, web_url, *extra, stdin=""):
    ctx = Context.for_test(tmp_path, stdin=stdin)
    cfg = tmp_path / "home" / ".slapos" / "slapos-client.cfg"
    argv = [
        "configure",
        "client",
        "--cfg",
        str(cfg),
        "--master-url",
        "https://master.example",
        "--master-url-web",
        web_url,
        *extra,
    ]
    return main(argv, ctx=ctx), ctx, cfg


def test_configure_client_writes_certificate_key_and_config(tmp_path, fake_master):
    def answer(request):
        assert request.headers["X-Access-Token"] == "secret-token"
        return 200, json.dumps({"certificate": CERT, "key": KEY})

    fake_master.routes["/Person_getCertificate"] = answer
    code, ctx, cfg = configure(tmp_path, fake_master.url, "--token", "secret-token")
    assert code == 0, ctx.stderr.getvalue()
    directory = cfg.parent
    assert (directory / "client.crt").read_text() == CERT
    assert (directory / "client.key").read_text() == KEY
    for path in (cfg, directory / "client.crt", directory / "client.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_client_config(cfg)
    assert config.master_url == "https://master.example"
    assert config.cert_file == str(directory / "client.crt")
    assert config.key_file == str(directory / "client.key")
    assert f"SlapOS client configuration written to {cfg}" in ctx.stderr.getvalue()
    [call] = fake_master.requests
    assert call.method == "POST"

    # a second run refuses to overwrite anything, and asks nothing
    code, ctx, _ = configure(tmp_path, fake_master.url, "--token", "secret-token")
    assert code == 1
    assert "Please remove it before creating a new configuration" in ctx.stderr.getvalue()
    assert len(fake_master.requests) == 1


def test_configure_client_prompts_for_token(tmp_path, fake_master):
    fake_master.routes["/Person_getCertificate"] = (
        200,
        json.dumps({"certificate": CERT, "key": KEY}),
    )
    code, ctx, _ = configure(tmp_path, fake_master.url, stdin="\nprompted\n")
    assert code == 0
    assert ctx.stderr.getvalue().count("Credential security token: ") == 2
    assert fake_master.requests[0].headers["X-Access-Token"] == "prompted"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((403, "Forbidden"), "Access denied to the SlapOS Master"),
        ((200, "false"), "did not answer Person_getCertificate with a certificate"),
    ],
    ids=["bad-token", "unexpected-answer"],
)
def test_configure_client_refused_writes_nothing(tmp_path, fake_master, answer, message):
    fake_master.routes["/Person_getCertificate"] = answer
    code, ctx, cfg = configure(tmp_path, fake_master.url, "--token", "wrong")
    assert code == 1
    assert message in ctx.stderr.getvalue()
    assert not cfg.exists()
    assert not (cfg.parent / "client.key").exists()


def test_configure_client_existing_key(tmp_path, fake_master):
    directory = tmp_path / "home" / ".slapos"
    directory.mkdir(parents=True)
    (directory / "client.key").write_text("old")
    code, ctx, _ = configure(tmp_path, fake_master.url, "--token", "t")
    assert code == 1
    assert "before creating a new key" in ctx.stderr.getvalue()
    assert (directory / "client.key").read_text() == "old"
    assert fake_master.requests == []


def test_configure_client_no_token_on_eof(tmp_path, fake_master):
    code, ctx, _ = configure(tmp_path, fake_master.url)
    assert code == 2
    assert "no token given" in ctx.stderr.getvalue()


def _rest_master(fake_master, token_answer):
    base = fake_master.url
    fake_master.routes["/hateoas/"] = (
        200,
        json.dumps(
            {
                "_links": {
                    "self": {"href": base + "/web"},
                    "raw_search": {"href": base + "/search{?query,select_list*,limit}"},
                    "traverse": {"href": base + "/traverse{?relative_url,view}"},
                }
            }
        ),
    )
    fake_master.routes["/web/computer_module/Base_getComputerToken"] = token_answer


def run_token(tmp_path, fake_master, *extra):
    cfg = tmp_path / "c.cfg"
    cfg.write_text(
        f"[slapos]\nmaster_url = {fake_master.url}\nmaster_rest_url = {fake_master.url}/hateoas/\n"
    )
    ctx = Context.for_test(tmp_path)
    code = main(["computer", "token", "--cfg", str(cfg), *extra], ctx=ctx)
    return code, ctx.stdout.getvalue(), ctx.stderr.getvalue()


def test_computer_token(tmp_path, fake_master):
    _rest_master(fake_master, (200, json.dumps({"access_token": "TOKEN-123"})))
    assert run_token(tmp_path, fake_master) == (0, "Computer token: TOKEN-123\n", "")
    _code, out, _ = run_token(tmp_path, fake_master, "--format", "json")
    assert json.loads(out) == {"token": "TOKEN-123"}
    root_call = fake_master.calls("/hateoas/")[0]
    assert root_call.headers["Cache-Control"] == "no-cache"


def test_computer_token_no_longer_supported(tmp_path, fake_master):
    _rest_master(fake_master, (410, json.dumps({"message": "This API is no longer supported"})))
    code, _out, err = run_token(tmp_path, fake_master)
    assert code == 1
    assert "HTTP 410" in err and "no longer supported" in err


def test_configure_client_verifies_the_web_side_before_sending_the_token(tmp_path):
    """An https web side whose certificate no system CA signed: refused in one line, the
    token not sent; --no-master-tls-verify goes on (with a warning)."""
    import http.server

    from tests.unit.slap.test_tls import issue, make_ca

    seen: list[str] = []

    class Web(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("X-Access-Token", ""))
            body = json.dumps({"certificate": CERT, "key": KEY}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    cert, key = issue(tmp_path, make_ca(tmp_path, "private-ca"), "web", san=True)
    with serve_http(Web, tls=tls_server_context(cert, key)) as served:
        url = served.url
        code, ctx, cfg = configure(tmp_path, url, "--token", "secret-token")
        assert code == 1
        [line] = ctx.stderr.getvalue().strip().splitlines()
        assert "certificate could not be verified" in line
        assert seen == [] and not cfg.exists()
        code, ctx, cfg = configure(
            tmp_path, url, "--token", "secret-token", "--no-master-tls-verify"
        )
        assert code == 0, ctx.stderr.getvalue()
        assert seen == ["secret-token"] and cfg.exists()
        assert "master_tls_verify is off" in ctx.stderr.getvalue()
