"""slapos-proxy.cfg -> ProxyConfig (cli.md §3.6).

`[slapproxy]` and `[slapos]` are one namespace (a key present in both: the first section in
the file wins, as upstream); command-line values win over both. `foo-bar` and `foo_bar`
are the same key. `[multimaster/<url>]` sections list other masters to forward to.

Must not import slapos.cli.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slapos.config import IniFile, iter_multimaster_sections, parse_int, split_lines
from slapos.errors import ConfigError

log = logging.getLogger(__name__)

#: Keys this module reads; anything else in [slapproxy] is logged at DEBUG.
KNOWN_KEYS = frozenset(
    {
        "database_uri", "host", "port", "computer_id", "software_product_list", "log_file",
        "local_software_release_root", "public_directory_path", "shacache_content_directory",
        "shacache_metadata_directory", "shacache_signing_key_path", "shacache_upstream_cache_url",
        "shacache_upstream_dir_url", "tls_certificate", "tls_key", "tls_ca", "threads",
        "master_url", "software_root", "instance_root", "tls_ca_key", "http_server",
    }
)  # fmt: skip


@dataclass(frozen=True)
class MultimasterEntry:
    """One `[multimaster/<url>]` section."""

    url: str
    key: str | None = None
    cert: str | None = None
    software_release_list: tuple[str, ...] = ()
    computer: str | None = None
    partition: str | None = None


@dataclass(frozen=True)
class TLSConfig:
    """Serve https; with `ca`, every call must present a certificate that CA signed."""

    certificate: Path
    key: Path
    ca: Path | None = None
    #: key of the CA, to issue partition and computer certificates (optional).
    ca_key: Path | None = None


@dataclass(frozen=True)
class ProxyConfig:
    path: Path | None
    database_uri: str
    computer_id: str = "local_computer"
    host: str = "127.0.0.1"
    port: int = 0
    software_product_list: Mapping[str, str] = field(default_factory=dict)
    log_file: str | None = None
    local_software_release_root: str | None = None
    public_directory_path: str | None = None
    shacache_content_directory: Path | None = None
    shacache_metadata_directory: Path | None = None
    shacache_signing_key_path: Path | None = None
    shacache_upstream_cache_url: str | None = None
    shacache_upstream_dir_url: str | None = None
    multimaster: Mapping[str, MultimasterEntry] = field(default_factory=dict)
    tls: TLSConfig | None = None
    threads: int = 4
    #: `builtin` (slapos.proxy.httpserver) or `waitress`
    http_server: str = "builtin"


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def load_proxy_config(
    path: Path | None, overrides: Mapping[str, Any] | None = None, *, for_start: bool = True
) -> ProxyConfig:
    """Read slapos-proxy.cfg (None: command line only); ConfigError names what is missing."""
    ini = IniFile.read(path) if path is not None else IniFile.parse("", "<command line>")
    where = str(path) if path is not None else "<command line>"
    merged: dict[str, str] = {}
    for name in ini.sections():
        if name in ("slapproxy", "slapos"):
            for key, value in ini.section(name).items():
                if value.strip() and key not in merged:
                    merged[key] = value.strip()
    for key in ini.section("slapproxy"):
        if key not in KNOWN_KEYS:
            log.debug("%s: [slapproxy] %s is not used by the proxy", where, key)
    for key, value in (overrides or {}).items():
        if value is not None and value != "":
            merged[key] = str(value)

    def need(key: str) -> str:
        if key not in merged:
            raise ConfigError(
                f"{where}: {key} is required (set it in [slapproxy] or [slapos], "
                "or on the command line)"
            )
        return merged[key]

    database_uri = need("database_uri")
    port = 0
    computer_id = merged.get("computer_id", "")
    if for_start:
        port = parse_int(need("port"), f"{where}: [slapproxy] port")
        if not 0 <= port <= 65535:
            raise ConfigError(f"{where}: [slapproxy] port must be between 0 and 65535, got {port}")
        computer_id = need("computer_id")
    tls = _tls(merged, where)
    http_server = _http_server(merged.get("http_server", "builtin"), where)
    if tls is not None and http_server == "waitress":
        raise ConfigError(f"{where}: [slapproxy] http_server = waitress cannot serve TLS (tls_*)")
    return ProxyConfig(
        path=path,
        database_uri=database_uri,
        computer_id=computer_id or "local_computer",
        host=merged.get("host", "127.0.0.1"),
        port=port,
        software_product_list=_products(merged.get("software_product_list", ""), where),
        log_file=merged.get("log_file"),
        local_software_release_root=merged.get("local_software_release_root"),
        public_directory_path=merged.get("public_directory_path"),
        shacache_content_directory=_optional_path(merged.get("shacache_content_directory")),
        shacache_metadata_directory=_optional_path(merged.get("shacache_metadata_directory")),
        shacache_signing_key_path=_optional_path(merged.get("shacache_signing_key_path")),
        shacache_upstream_cache_url=merged.get("shacache_upstream_cache_url"),
        shacache_upstream_dir_url=merged.get("shacache_upstream_dir_url"),
        multimaster=_multimaster(ini),
        tls=tls,
        threads=parse_int(merged.get("threads", "4"), f"{where}: [slapproxy] threads"),
        http_server=http_server,
    )


HTTP_SERVERS = ("builtin", "waitress")


def _http_server(value: str, where: str) -> str:
    name = value.strip().lower()
    if name not in HTTP_SERVERS:
        raise ConfigError(
            f"{where}: [slapproxy] http_server must be builtin or waitress, got {value!r}"
        )
    return name


def _products(text: str, where: str) -> dict[str, str]:
    products: dict[str, str] = {}
    for line in split_lines(text):
        name, _, url = line.partition(" ")
        if not url.strip():
            raise ConfigError(
                f"{where}: [slapproxy] software_product_list: expected '<name> <url>', got {line!r}"
            )
        products[name] = url.strip()
    return products


def _multimaster(ini: IniFile) -> dict[str, MultimasterEntry]:
    entries: dict[str, MultimasterEntry] = {}
    for url, section in iter_multimaster_sections(ini):
        entries[url] = MultimasterEntry(
            url=url,
            key=section.get("key", "").strip() or None,
            cert=section.get("cert", "").strip() or None,
            software_release_list=split_lines(section.get("software_release_list", "")),
            computer=section.get("computer", "").strip() or None,
            partition=section.get("partition", "").strip() or None,
        )
    return entries


def _tls(merged: Mapping[str, str], where: str) -> TLSConfig | None:
    cert, key = merged.get("tls_certificate"), merged.get("tls_key")
    if not cert and not key:
        if merged.get("tls_ca"):
            raise ConfigError(f"{where}: [slapproxy] tls_ca needs tls_certificate and tls_key")
        return None
    if not (cert and key):
        raise ConfigError(f"{where}: [slapproxy] tls_certificate and tls_key go together")
    if merged.get("tls_ca_key") and not merged.get("tls_ca"):
        raise ConfigError(f"{where}: [slapproxy] tls_ca_key needs tls_ca")
    return TLSConfig(
        certificate=Path(cert).expanduser(),
        key=Path(key).expanduser(),
        ca=_optional_path(merged.get("tls_ca")),
        ca_key=_optional_path(merged.get("tls_ca_key")),
    )
