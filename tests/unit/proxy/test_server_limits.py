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


def test_the_date_header_follows_the_clock():
    # made once a second: the text is the current second's, and changes with it
    import time
    from email.utils import parsedate_to_datetime

    from slapos.proxy.worker import _http_date

    first = _http_date()
    assert abs(parsedate_to_datetime(first).timestamp() - time.time()) < 2
    time.sleep(1.05)
    second = _http_date()
    assert parsedate_to_datetime(second).timestamp() - parsedate_to_datetime(first).timestamp() >= 1
    assert _http_date(0.5) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_report_times_follow_the_clock():
    from slapos.proxy.status import iso

    assert [iso(t) for t in (0.0, 0.99, 1.0, 59.5)] == [
        "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z",
        "1970-01-01T00:00:59Z",
    ]  # fmt: skip
    assert iso(1e9) == "2001-09-09T01:46:40Z" and iso(0.2) == "1970-01-01T00:00:00Z"
