"""The proxy's request-body limit: small for SLAP calls, large where it serves a shacache."""

from __future__ import annotations

from pathlib import Path

from slapos.proxy.config import ProxyConfig
from slapos.proxy.server import MAX_CACHE_BODY, MAX_SLAP_BODY, max_body_size


def test_plain_proxy_keeps_bodies_small():
    config = ProxyConfig(path=None, database_uri="x.db", computer_id="C")
    assert max_body_size(config) == MAX_SLAP_BODY


def test_proxy_serving_a_cache_accepts_large_binaries(tmp_path: Path):
    config = ProxyConfig(
        path=None,
        database_uri="x.db",
        computer_id="C",
        shacache_content_directory=tmp_path / "c",
        shacache_metadata_directory=tmp_path / "m",
    )
    assert max_body_size(config) == MAX_CACHE_BODY > 4 * 1024**3
