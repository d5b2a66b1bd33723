"""What the networkcache holds: the queries behind `slapos cachelookup`.

Pure of presentation: each query returns rows; slapos.cli.cache draws the table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import requests

from slapos.cache.networkcache import entry_platform
from slapos.cache.platform import Platform
from slapos.cache.shacache import NetworkCacheClient, pypi_key, software_hash, url_key
from slapos.config import NetworkCacheConfig
from slapos.errors import ConfigError

_MD5 = re.compile(r"^[0-9a-f]{32}")


@dataclass(frozen=True)
class BinaryRow:
    multiarch: str
    os: tuple[str, ...]
    compatible: bool
    verified: bool


@dataclass(frozen=True)
class BinaryLookup:
    """The binaries of one software release in the binary cache."""

    md5: str
    software_url: str | None  # as recorded by the first entry
    rows: tuple[BinaryRow, ...]


@dataclass(frozen=True)
class SourceRow:
    name: str  # url or basename
    sha512: str
    signed: bool


@dataclass(frozen=True)
class SourceLookup:
    key: str
    shadir_url: str
    rows: tuple[SourceRow, ...]


def release_md5(software_url: str) -> str:
    """An argument that starts with 32 hex digits is taken as the hash (as upstream)."""
    return software_url[:32] if _MD5.match(software_url) else software_hash(software_url)


def _need(value: str | None, key: str) -> str:
    if not value:
        raise ConfigError(f"[networkcache] {key} is missing")
    return value


def lookup_binary(
    config: NetworkCacheConfig,
    software_url: str,
    here: Platform,
    session: requests.Session | None = None,
) -> BinaryLookup:
    """Binaries of `software_url` (or its md5), each with compatible?/verified?.

    Raises CacheNotFound when the cache does not know the release.
    """
    _need(config.download_binary_dir_url, "download-binary-dir-url")
    _need(config.download_binary_cache_url, "download-binary-cache-url")
    md5 = release_md5(software_url)
    client = NetworkCacheClient.for_binaries(config, session)
    entries = client.select(md5)
    rows = []
    for entry in entries:
        tags = entry_platform(entry.metadata)
        if tags is None:
            continue
        multiarch, os_value = tags
        rows.append(BinaryRow(multiarch, tuple(os_value), here.accepts(*tags), entry.verified))
    first = entries[0].metadata.get("software_url") if entries else None
    return BinaryLookup(
        md5,
        first if isinstance(first, str) else None,
        tuple(sorted(rows, key=lambda r: (r.multiarch, r.os))),
    )


def _lookup_source(
    config: NetworkCacheConfig, key: str, field: str, session: requests.Session | None
) -> SourceLookup:
    dir_url = _need(config.download_dir_url, "download-dir-url")
    _need(config.download_cache_url, "download-cache-url")
    client = NetworkCacheClient.for_sources(config, session)
    rows = tuple(
        SourceRow(str(e.metadata.get(field, "")), e.sha512, e.verified) for e in client.select(key)
    )
    return SourceLookup(key, dir_url.rstrip("/") + "/" + key, rows)


def lookup_url(
    config: NetworkCacheConfig, url: str, session: requests.Session | None = None
) -> SourceLookup:
    """Cached copies of a file downloaded from `url` (buildout's networkcache)."""
    return _lookup_source(config, url_key(url), "url", session)


def lookup_pypi(
    config: NetworkCacheConfig, name: str, version: str, session: requests.Session | None = None
) -> SourceLookup:
    """Cached Python distributions `name==version` (buildout's networkcache)."""
    return _lookup_source(config, pypi_key(name, version), "basename", session)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Upstream's table: rules above and below the header and at the end, no vertical rules,
    cells centred (more space on the left for even-length text, as prettytable does)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return " " + " ".join(_centre(c, w) for c, w in zip(cells, widths, strict=True)) + " "

    rule = "-" * (sum(widths) + len(widths) + 1)
    return [rule, line(headers).rstrip(), rule, *(line(r).rstrip() for r in rows), rule]


def _centre(text: str, width: int) -> str:
    excess = width - len(text)
    left = excess // 2
    if excess % 2 and len(text) % 2 == 0:
        left += 1
    return " " * left + text + " " * (excess - left)
