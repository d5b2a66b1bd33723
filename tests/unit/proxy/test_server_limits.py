"""The proxy's request-body limits: small for SLAP calls, large where it serves a shacache."""

from __future__ import annotations

from pathlib import Path

from slapos.proxy.config import ProxyConfig, ServingConfig
from slapos.proxy.server import body_limits


def test_plain_proxy_keeps_bodies_small():
    config = ProxyConfig(path=None, database_uri="x.db", computer_id="C")
    limits = body_limits(config)
    assert limits.max_body == limits.max_cache_body == ServingConfig().max_body_size


def test_proxy_serving_a_cache_accepts_large_binaries(tmp_path: Path):
    config = ProxyConfig(
        path=None,
        database_uri="x.db",
        computer_id="C",
        shacache_content_directory=tmp_path / "c",
        shacache_metadata_directory=tmp_path / "m",
    )
    limits = body_limits(config)
    assert limits.max_cache_body == ServingConfig().max_cache_body_size > 4 * 1024**3
    assert limits.max_body == ServingConfig().max_body_size
