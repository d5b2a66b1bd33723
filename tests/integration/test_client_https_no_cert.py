"""The client over https without a client certificate: works against a master that asks
for none, and says in one line what is missing when the master requires one."""

from __future__ import annotations

from pathlib import Path

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from tests.fixtures.common import free_port, wait_for
from tests.fixtures.proxy import start_proxy
from tests.integration.test_proxy_tls import make_pki


def _client(tmp_path: Path, url: str, trust: str) -> tuple[int, str, str]:
    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {url}\n{trust}\ntimeout = 10\n")
    ctx = Context.for_test(tmp_path)
    code = main(["service", "list", "--cfg", str(cfg)], ctx=ctx)
    return code, ctx.stdout.getvalue(), ctx.stderr.getvalue()


@pytest.mark.parametrize("client_ca", [False, True], ids=["no-client-certificates", "required"])
def test_https_master_without_client_certificate(tmp_path: Path, client_ca: bool) -> None:
    pki = make_pki(tmp_path)
    port = free_port()
    extra = f"tls_certificate = {pki['server.crt']}\ntls_key = {pki['server.key']}\n"
    if client_ca:
        extra += f"tls_ca = {pki['ca.crt']}\n"
    gen = start_proxy(tmp_path / "proxy", port=port, extra_config=extra)
    proxy = next(gen)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_for(lambda: "serving https://" in proxy.log.read_text(), 30, "https proxy")
        for trust in (f"master_ca_file = {pki['ca.crt']}", "master_tls_verify = false"):
            code, _out, err = _client(tmp_path, url, trust)
            if not client_ca:
                assert code == 0, err
                assert "Traceback" not in err
            else:
                assert code != 0
                errors = [line for line in err.splitlines() if "ERROR" in line]
                assert len(errors) == 1, err
                assert "key_file and cert_file" in errors[0]
                assert "Traceback" not in err
    finally:
        next(gen, None)
