"""slapos-proxy.cfg -> ProxyConfig (cli.md §3.6).

`[slapproxy]` and `[slapos]` are one namespace (a key present in both: the first section in
the file wins, as upstream); command-line values win over both. `foo-bar` and `foo_bar`
are the same key. `[multimaster/<url>]` sections list other masters to forward to.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from slapos.config import (
    IniFile,
    iter_multimaster_sections,
    parse_bool,
    parse_int,
    split_lines,
)
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
        "workers", "max_connections", "keepalive_timeout", "handshake_timeout", "head_timeout",
        "read_timeout", "stop_timeout", "max_body_size", "max_cache_body_size",
        "body_spool_size", "max_request_line", "max_header_fields", "max_header_field_size",
        "panel_host_list",
    }
)  # fmt: skip

MiB = 1024 * 1024

#: The HTTP server `slapos proxy start` uses when `http_server` is not set (TLS: always
#: gunicorn, which gives the application the client's certificate).
DEFAULT_HTTP_SERVER = "gunicorn"
#: `http_server` values: our servers, and earlier versions' (which mean the default)
HTTP_SERVERS = ("gunicorn", "granian")
_FORMER_HTTP_SERVERS = ("builtin", "waitress")


@dataclass(frozen=True)
class ServingConfig:
    """How `slapos proxy start` serves HTTP; every limit is a [slapproxy] key."""

    #: `gunicorn` (plain HTTP and TLS) or `granian` (plain HTTP only)
    http_server: str = DEFAULT_HTTP_SERVER
    #: server processes on the same address (gunicorn workers); 1: no separate arbiter
    workers: int = 1
    #: requests served at once by each process
    threads: int = 8
    #: open connections per process (idle keep-alive ones included); more wait in the backlog
    max_connections: int = 2048
    #: an idle keep-alive connection is closed after this many seconds
    keepalive_timeout: float = 120.0
    #: the TLS handshake must be done this long after the connection is accepted
    handshake_timeout: float = 10.0
    #: the whole request head must have arrived this long after it started (or after the
    #: connection was accepted)
    head_timeout: float = 10.0
    #: each read of a request body and each write of an answer
    read_timeout: float = 60.0
    #: on SIGTERM, requests in progress get this long to finish
    stop_timeout: float = 10.0
    #: request bodies: refused (413) above this size...
    max_body_size: int = 64 * MiB
    #: ...except uploads to the built-in shacache (/shacache/, when configured)
    max_cache_body_size: int = 32 * 1024 * MiB
    #: bodies larger than this are spooled to a temporary file while they arrive
    body_spool_size: int = 1 * MiB
    max_request_line: int = 8190
    max_header_fields: int = 100
    max_header_field_size: int = 8190


@dataclass(frozen=True)
class MultimasterEntry:
    """One `[multimaster/<url>]` section."""

    url: str
    key: str | None = None
    cert: str | None = None
    software_release_list: tuple[str, ...] = ()
    computer: str | None = None
    partition: str | None = None
    #: how that master's certificate is checked: this CA file, else the system's trust
    #: store; `master_tls_verify = false`: not at all (warned about)
    master_ca_file: str | None = None
    master_tls_verify: bool = True


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
    serving: ServingConfig = field(default_factory=ServingConfig)
    #: host names the web panel answers under besides addresses, localhost and this
    #: machine's name (docs/panel.rst: DNS rebinding)
    panel_host_list: tuple[str, ...] = ()


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


#: What to do when the proxy's configuration file is missing.
PROXY_CONFIG_HINT = (
    "pass the proxy's with --cfg, e.g. DIR/etc/slapos-proxy.cfg as 'slapos configure local' "
    "writes it"
)


def _say_unknown_keys(keys: Iterable[str], where: str) -> None:
    """A key close to a known one is a typo (tls_cert_file would serve http silently): a
    warning; any other unknown key (upstream's, a note) only a DEBUG line."""
    import difflib

    for key in keys:
        if key in KNOWN_KEYS:
            continue
        close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.6)
        if close:
            log.warning(
                "%s: [slapproxy] %s is not a key of the proxy (did you mean %s?): ignored",
                where,
                key,
                close[0],
            )
        else:
            log.debug("%s: [slapproxy] %s is not used by the proxy", where, key)


def load_proxy_config(
    path: Path | None, overrides: Mapping[str, Any] | None = None, *, for_start: bool = True
) -> ProxyConfig:
    """Read slapos-proxy.cfg (None: command line only); ConfigError names what is missing."""
    if path is not None:
        ini = IniFile.read(path, PROXY_CONFIG_HINT)
    else:
        ini = IniFile.parse("", "<command line>")
    where = str(path) if path is not None else "<command line>"
    merged: dict[str, str] = {}
    for name in ini.sections():
        if name in ("slapproxy", "slapos"):
            for key, value in ini.section(name).items():
                if value.strip() and key not in merged:
                    merged[key] = value.strip()
    _say_unknown_keys(ini.section("slapproxy"), where)
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
        serving=_serving(merged, where, tls is not None),
        panel_host_list=split_lines(merged.get("panel_host_list", "").replace(",", "\n")),
    )


_SIZE_UNITS = {"": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}


def _size(value: str, where: str) -> int:
    """`65536`, `64M`, `64MiB`, `32G`: a number of bytes (binary units)."""
    match = re.fullmatch(r"(\d+)\s*([kmg]?)(?:i?b)?", value.strip().lower())
    if match is None:
        raise ConfigError(f"{where}: expected a size in bytes (e.g. 65536, 64M, 2G), got {value!r}")
    return int(match[1]) * _SIZE_UNITS[match[2]]


def _seconds(value: str, where: str) -> float:
    try:
        seconds = float(value.strip())
    except ValueError:
        raise ConfigError(f"{where}: expected a number of seconds, got {value.strip()!r}") from None
    if not 0 < seconds < 1e6:
        raise ConfigError(f"{where}: expected a number of seconds above 0, got {value.strip()!r}")
    return seconds


def _http_server(merged: Mapping[str, str], where: str, tls: bool) -> str:
    """The `http_server` to use: the key's, else the default (gunicorn with TLS)."""
    text = merged.get("http_server", "").strip()
    name = text.lower()
    default = "gunicorn" if tls else DEFAULT_HTTP_SERVER
    if name in HTTP_SERVERS:
        if name == "granian" and tls:
            raise ConfigError(
                f"{where}: [slapproxy] http_server = granian cannot serve TLS (tls_certificate): "
                "identities by client certificate need gunicorn, as granian does not give "
                "the client's certificate to the application"
            )
        return name
    if name in _FORMER_HTTP_SERVERS:
        log.warning(
            "%s: [slapproxy] http_server = %s is an earlier version's value, ignored: served by "
            "%s (set gunicorn or granian, or remove the key)",
            where,
            text,
            default,
        )
    elif name:
        raise ConfigError(
            f"{where}: [slapproxy] http_server must be gunicorn or granian, got {text!r}"
        )
    return default


def _serving(merged: Mapping[str, str], where: str, tls: bool = False) -> ServingConfig:
    values: dict[str, Any] = {"http_server": _http_server(merged, where, tls)}
    for spec in fields(ServingConfig):
        text = merged.get(spec.name)
        if text is None or spec.name == "http_server":
            continue
        key = f"{where}: [slapproxy] {spec.name}"
        if spec.type in ("float", float):
            values[spec.name] = _seconds(text, key)
        elif spec.name.endswith("_size"):
            values[spec.name] = _size(text, key)
        else:
            values[spec.name] = parse_int(text, key)
            if values[spec.name] < 1:
                raise ConfigError(f"{key} must be at least 1, got {values[spec.name]}")
    serving = ServingConfig(**values)
    if serving.threads > serving.max_connections:
        raise ConfigError(f"{where}: [slapproxy] threads must not exceed max_connections")
    return serving


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
            master_ca_file=section.get("master_ca_file", "").strip() or None,
            master_tls_verify=parse_bool(
                section.get("master_tls_verify", "true"),
                f"{ini.path}: [multimaster/{url}] master_tls_verify",
            ),
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
