"""Upstream's `slapos service list/info` and `computer list/info` against both proxies."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.fixtures.upstream import RunningProxy, Upstream, formatted_computer_code

SR = "http://sr.example.invalid/software.cfg"


def _setup(upstream: Upstream, proxy: RunningProxy) -> None:
    result = upstream.python_code(
        formatted_computer_code(proxy)
        + textwrap.dedent(
            f"""
        order = slap.registerOpenOrder()
        order.request({SR!r}, "MyService", partition_parameter_kw={{"a": "1"}})
        order.request({SR!r}, "MyShared", shared=True, partition_parameter_kw={{"u": "v"}})
        """
        )
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def client_cfg(any_proxy: RunningProxy, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    cfg = tmp_path / "client.cfg"
    text = f"[slapos]\nmaster_url = {any_proxy.url}\n"
    if "upstream" in request.node.name:
        # 1.26.1's proxy does not answer getHateoasUrl; ours does.
        text += f"master_rest_url = {any_proxy.url}/hateoas/\n"
    cfg.write_text(text)
    return cfg


def test_service_and_computer_commands(
    upstream: Upstream, any_proxy: RunningProxy, client_cfg: Path
) -> None:
    _setup(upstream, any_proxy)
    listing = upstream.run("service", "list", "--cfg", str(client_cfg))
    assert listing.returncode == 0, listing.stderr
    assert "MyService" in listing.stdout and "MyShared" in listing.stdout
    info = upstream.run("service", "info", "MyService", "--cfg", str(client_cfg))
    assert info.returncode == 0, info.stderr
    assert SR in info.stdout + info.stderr
    shared = upstream.run("service", "info", "MyShared", "--cfg", str(client_cfg))
    assert shared.returncode == 0, shared.stderr
    computers = upstream.run("computer", "list", "--cfg", str(client_cfg))
    assert computers.returncode == 0, computers.stderr
    assert any_proxy.computer_id in computers.stdout + computers.stderr
    computer = upstream.run("computer", "info", any_proxy.computer_id, "--cfg", str(client_cfg))
    assert computer.returncode == 0, computer.stderr
    missing = upstream.run("service", "info", "Nope", "--cfg", str(client_cfg))
    assert missing.returncode != 0


def test_upstream_request_supply_remove_commands(upstream: Upstream, proxy: RunningProxy,
                                                 tmp_path: Path) -> None:  # fmt: skip
    _setup(upstream, proxy)
    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {proxy.url}\n")
    supply = upstream.run("supply", SR, proxy.computer_id, "--cfg", str(cfg))
    assert supply.returncode == 0, supply.stderr
    request = upstream.run("request", "cli-inst", SR, "--parameters", "a=1", "--cfg", str(cfg))
    assert request.returncode == 0, request.stderr
    assert "State is : started." in request.stdout + request.stderr
    shared = upstream.run("request", "cli-shared", SR, "--slave", "--cfg", str(cfg))
    assert shared.returncode == 0, shared.stderr
    remove = upstream.run("remove", SR, proxy.computer_id, "--cfg", str(cfg))
    assert remove.returncode == 0, remove.stderr
    table = proxy.database
    import sqlite3

    with sqlite3.connect(table) as conn:
        assert conn.execute("SELECT requested_state FROM software18").fetchall() == [("destroyed",)]
        titles = {r[0] for r in conn.execute("SELECT partition_reference FROM partition18")}
    assert "cli-inst" in titles
