"""Configuration files -> frozen, typed dataclasses.

Upstream's INI files keep their section and key names; `foo-bar` and `foo_bar` are the same
key. Precedence: command-line flag > file > default. Environment variables only choose the
file (resolved in slapos.cli.context). Libraries take these dataclasses, never a
ConfigParser, an argparse Namespace or a dict of strings.
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from slapos.errors import ConfigError

log = logging.getLogger(__name__)

NODE_CONFIG_ENV = "SLAPOS_CONFIGURATION"
NODE_CONFIG_DEFAULT = "/etc/opt/slapos/slapos.cfg"
CLIENT_CONFIG_ENV = "SLAPOS_CLIENT_CONFIGURATION"
CLIENT_CONFIG_DEFAULT = "~/.slapos/slapos-client.cfg"
#: Named by the seed documentation; read when slapos-client.cfg does not exist.
CLIENT_CONFIG_LEGACY = "~/.slapos/slapos.cfg"

NODE_CONFIG_HINT = (
    "pass --cfg or set $SLAPOS_CONFIGURATION; 'slapos configure local' or "
    "'slapos node register' create one"
)
CLIENT_CONFIG_HINT = (
    "pass --cfg or set $SLAPOS_CLIENT_CONFIGURATION; 'slapos configure client' creates one"
)

#: [slapos] master_max_answer_mb: largest answer taken from a master (MiB).
DEFAULT_MAX_ANSWER_MB = 128
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off", ""}


def norm_key(key: str) -> str:
    """`foo-bar`, `Foo_Bar` and `foo_bar` are the same key."""
    return key.strip().lower().replace("-", "_")


class IniFile:
    """One parsed INI file; every lookup error names file, section and key."""

    def __init__(self, path: Path, parser: configparser.ConfigParser) -> None:
        self.path = path
        self._sections: dict[str, dict[str, str]] = {}
        for name in parser.sections():
            try:
                items = parser.items(name)
            except configparser.Error as exc:  # bad %-interpolation, for instance
                raise ConfigError(f"{path}: [{name}]: {_one_line(exc)}") from exc
            self._sections[name] = {norm_key(k): v for k, v in items}

    @classmethod
    def read(cls, path: Path | str, missing_hint: str | None = None) -> IniFile:
        """Read and parse `path`, or raise ConfigError saying why not (and `missing_hint`)."""
        path = Path(os.path.expanduser(str(path)))
        try:
            exists = path.exists()
        except PermissionError:  # a directory on the way is not ours (Python < 3.12 raises)
            exists = True  # the read below says "permission denied"
        if not exists:
            hint = f" ({missing_hint})" if missing_hint else ""
            raise ConfigError(f"configuration file does not exist: {path}{hint}")
        try:
            text = path.read_text(encoding="utf-8")
        except PermissionError as exc:
            raise ConfigError(
                f"cannot read configuration file {path}: permission denied "
                "(run as its owner or pass --cfg)"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: Path | str = "<string>") -> IniFile:
        parser = configparser.ConfigParser(strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as exc:
            raise ConfigError(f"{path}: not a valid configuration file: {_one_line(exc)}") from exc
        check_duplicate_keys(text, path)
        return cls(Path(path), parser)

    def sections(self) -> list[str]:
        return list(self._sections)

    def has_section(self, section: str) -> bool:
        return section in self._sections

    def section(self, section: str, *, required: bool = False) -> dict[str, str]:
        if section not in self._sections:
            if required:
                raise ConfigError(f"{self.path}: missing section [{section}]")
            return {}
        return dict(self._sections[section])

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        return self._sections.get(section, {}).get(norm_key(key), default)

    def require(self, section: str, key: str) -> str:
        if section not in self._sections:
            raise ConfigError(f"{self.path}: missing section [{section}]")
        value = self._sections[section].get(norm_key(key))
        if value is None:
            raise ConfigError(f"{self.path}: [{section}] {key} is missing")
        if not value.strip():
            raise ConfigError(f"{self.path}: [{section}] {key} is empty")
        return value.strip()

    def get_int(self, section: str, key: str, default: int | None = None) -> int | None:
        value = self.get(section, key)
        if value is None or not value.strip():
            return default
        return parse_int(value, f"{self.path}: [{section}] {key}")

    def get_list(self, section: str, key: str) -> tuple[str, ...]:
        """A newline-separated list, blank lines dropped."""
        return split_lines(self.get(section, key) or "")


def check_duplicate_keys(text: str, path: Path | str) -> None:
    """Raise ConfigError naming both lines when a section sets one key twice.

    configparser (non-strict, as every file here is read) would keep the later value
    silently, and `master-url` / `master_url` are one key here though two to it; upstream
    stops with a traceback. A section named twice stays merged, but may not repeat a key.
    Keys start at column 0 (indented lines continue a value), as configparser reads them.
    """
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    section: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or line[0].isspace():
            continue
        if stripped.startswith("[") and "]" in stripped:
            section = stripped[1 : stripped.index("]")].strip()
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        raw = (line[:cut] if cut >= 0 else line).strip()
        if section is None or not raw:
            continue
        key = norm_key(raw)
        first = seen.setdefault((section, key), (raw, lineno))
        if first[1] != lineno:
            raise ConfigError(
                f"{path}: [{section}] {raw} is set twice, on lines {first[1]} and {lineno} "
                "(keep one)"
            )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def parse_bool(value: str, where: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where}: expected true or false, got {value.strip()!r}")


def parse_int(value: str, where: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ConfigError(f"{where}: expected a whole number, got {value.strip()!r}") from None


def split_lines(value: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in value.splitlines() if line.strip())


@dataclass(frozen=True)
class MasterAccess:
    """How to reach a master: where it is, the certificate and key shown to it, how its own
    certificate is checked, how large an answer is taken and how long a call may take.

    `tls_verify = False`: the master's certificate is not checked (warned about on every
    run); `max_answer_mb`: MiB; `timeout`: seconds a call may take. Node, client and format
    configurations each give theirs (`.master`); slapos.slap.entry's `connect()` and the
    watchdog's command line take it.
    """

    url: str
    key_file: str | None = None
    cert_file: str | None = None
    ca_file: str | None = None
    tls_verify: bool = True
    max_answer_mb: int = DEFAULT_MAX_ANSWER_MB
    timeout: float = 60.0
    rest_url: str | None = None


# --------------------------------------------------------------------------------------
# Client configuration (slapos-client.cfg)


@dataclass(frozen=True)
class ClientConfig:
    """What request, supply, remove, console, service and computer commands need."""

    path: Path
    master_url: str
    master_rest_url: str | None = None
    key_file: str | None = None
    cert_file: str | None = None
    master_ca_file: str | None = None
    #: False: the master's certificate is not checked (warned about on every run).
    master_tls_verify: bool = True
    #: Largest answer accepted from the master, in MiB.
    master_max_answer_mb: int = DEFAULT_MAX_ANSWER_MB
    timeout: float = 60.0
    #: [slapos.alias] name = url, and the legacy multi-line [slapconsole] alias.
    aliases: Mapping[str, str] = field(default_factory=dict)

    def resolve_alias(self, software: str) -> str:
        """`kvm` -> its URL when an alias of that name is configured, else unchanged."""
        return self.aliases.get(software, software)

    @property
    def master(self) -> MasterAccess:
        return _master_access(self, timeout=self.timeout, rest_url=self.master_rest_url)


def _master_access(
    config: ClientConfig | NodeConfig, *, timeout: float = 60.0, rest_url: str | None = None
) -> MasterAccess:
    """The node's or the client's master, as their [slapos] keys of the same names say."""
    return MasterAccess(
        config.master_url,
        config.key_file,
        config.cert_file,
        config.master_ca_file,
        config.master_tls_verify,
        config.master_max_answer_mb,
        timeout,
        rest_url,
    )


def check_url(url: str, where: str) -> str:
    """`url` unless it cannot be a URL at all (a bad port, an unclosed IPv6 bracket):
    ConfigError then, rather than a failure on every call (or a node gone "offline")."""
    from urllib.parse import urlsplit

    try:
        urlsplit(url).port  # noqa: B018 - parsed for its ValueError
    except ValueError as exc:
        raise ConfigError(f"{where} is not a URL: {url!r} ({exc})") from None
    return url


def load_client_config(path: Path, master_url: str | None = None) -> ClientConfig:
    """Read slapos-client.cfg; `master_url` (from the command line) wins over the file."""
    ini = IniFile.read(path, CLIENT_CONFIG_HINT)
    url = master_url or ini.get("slapos", "master_url")
    if not ini.has_section("slapos") and master_url is None:
        raise ConfigError(f"{path}: missing section [slapos]")
    if not url or not url.strip():
        raise ConfigError(f"{path}: [slapos] master_url is missing")
    url = check_url(url.strip(), f"{path}: [slapos] master_url")
    key = _expand(ini.get("slapconsole", "key_file"))
    cert = _expand(ini.get("slapconsole", "cert_file"))
    if not key and not cert:
        key = _expand(ini.get("slapos", "key_file"))
        cert = _expand(ini.get("slapos", "cert_file"))
    # No certificate over https is fine: the master may not ask for one (upstream refuses
    # here; we connect, and say what is missing if the master then requires one).
    # Upstream makes any other [slapconsole] key the default of a command option of that
    # name; only the certificate pair ever had an effect there (the rest are flags or are
    # overridden by [slapos]), so the others are said to do nothing.
    ignored = sorted(set(ini.section("slapconsole")) - {"key_file", "cert_file", "alias"})
    if ignored:
        log.warning("%s: [slapconsole] %s: accepted and ignored", path, ", ".join(ignored))
    aliases = dict(ini.section("slapos.alias"))
    for line in ini.get_list("slapconsole", "alias"):
        name, _, target = line.partition(" ")
        if target.strip():
            aliases.setdefault(name.strip(), target.strip())
    timeout = ini.get("slapos", "timeout")
    verify = ini.get("slapos", "master_tls_verify")
    limit = ini.get("slapos", "master_max_answer_mb")
    return ClientConfig(
        path=path,
        master_url=url,
        master_rest_url=(ini.get("slapos", "master_rest_url") or "").strip() or None,
        key_file=key,
        cert_file=cert,
        master_ca_file=_expand(ini.get("slapos", "master_ca_file")),
        master_tls_verify=(
            parse_bool(verify, f"{path}: [slapos] master_tls_verify") if verify else True
        ),
        master_max_answer_mb=_positive(limit, f"{path}: [slapos] master_max_answer_mb"),
        timeout=float(parse_int(timeout, f"{path}: [slapos] timeout")) if timeout else 60.0,
        aliases=aliases,
    )


def _positive(value: str | None, where: str, default: int = DEFAULT_MAX_ANSWER_MB) -> int:
    if value is None or not value.strip():
        return default
    number = parse_int(value, where)
    if number <= 0:
        raise ConfigError(f"{where}: expected a positive number, got {number}")
    return number


def _expand(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return os.path.expanduser(value.strip())


# --------------------------------------------------------------------------------------
# Node configuration (slapos.cfg)


@dataclass(frozen=True)
class NetworkCacheConfig:
    """[networkcache]: binary cache of whole software releases, and buildout's cache."""

    download_binary_cache_url: str | None = None
    download_binary_dir_url: str | None = None
    upload_binary_cache_url: str | None = None
    upload_binary_dir_url: str | None = None
    download_cache_url: str | None = None
    download_dir_url: str | None = None
    upload_cache_url: str | None = None
    upload_dir_url: str | None = None
    signature_private_key_file: str | None = None
    signature_certificate_list: str | None = None
    shacache_ca_file: str | None = None
    shacache_cert_file: str | None = None
    shacache_key_file: str | None = None
    shadir_ca_file: str | None = None
    shadir_cert_file: str | None = None
    shadir_key_file: str | None = None
    download_from_binary_cache_url_blacklist: tuple[str, ...] = ()
    upload_to_binary_cache_url_blacklist: tuple[str, ...] = ()
    download_from_binary_cache_force_url_list: tuple[str, ...] = ()

    @classmethod
    def from_section(cls, section: Mapping[str, str]) -> NetworkCacheConfig:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = section.get(f.name)
            if raw is None:
                continue
            if f.name.endswith(("_blacklist", "_list")) and f.name != "signature_certificate_list":
                values[f.name] = split_lines(raw)
            else:
                values[f.name] = raw.strip() or None
        if not values.get("download_from_binary_cache_url_blacklist"):
            legacy = split_lines(section.get("binary_cache_url_blacklist", ""))
            if legacy:
                values["download_from_binary_cache_url_blacklist"] = legacy
        return cls(**values)

    def signature_certificates(self) -> list[str]:
        """The trusted PEM certificates, one string each."""
        marker = "-----BEGIN CERTIFICATE-----"
        text = self.signature_certificate_list or ""
        return [marker + chunk for chunk in text.split(marker)[1:] if chunk.strip()]


@dataclass(frozen=True)
class NodeConfig:
    """[slapos] of slapos.cfg, merged with the command line, plus [networkcache]."""

    path: Path
    computer_id: str
    master_url: str
    software_root: Path
    instance_root: Path
    key_file: str | None = None
    cert_file: str | None = None
    master_ca_file: str | None = None
    master_tls_verify: bool = True
    master_max_answer_mb: int = DEFAULT_MAX_ANSWER_MB
    certificate_repository_path: Path | None = None
    shared_part_list: tuple[str, ...] = ()
    build_time_part_list: tuple[str, ...] = ()
    buildout: str | None = None
    buildout_debug: bool = False
    maximal_delay: int = 0
    maximum_periodicity: int = 86400
    promise_timeout: int = 20
    partition_timeout: int | None = None
    software_min_free_space: str = "1000M"
    instance_min_free_space: str = "1000M"
    instance_storage_home: str | None = None
    ipv4_global_network: str | None = None
    forbid_supervisord_automatic_launch: bool = False
    root_check: bool = True
    pidfile: str | None = None
    pidfile_software: str | None = None
    pidfile_instance: str | None = None
    pidfile_report: str | None = None
    collect_cache: int = 15
    networkcache: NetworkCacheConfig = field(default_factory=NetworkCacheConfig)
    #: every section of the file, for the rare reader of an extra section ([firewall] ...).
    ini: IniFile | None = field(default=None, compare=False, repr=False)

    @property
    def master(self) -> MasterAccess:
        return _master_access(self)  # 60 s a call, as every node command

    def pidfile_for(self, kind: str, cli_pidfile: str | None, default: str) -> str:
        """Upstream's precedence: pidfile_<kind> > --pidfile > pidfile > default."""
        specific = getattr(self, f"pidfile_{kind}", None)
        return specific or cli_pidfile or self.pidfile or default


_NODE_REQUIRED = ("computer_id", "master_url", "software_root", "instance_root")


def load_node_config(
    path: Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    required: tuple[str, ...] = _NODE_REQUIRED,
) -> NodeConfig:
    """Read slapos.cfg; keys in `overrides` (command line, None = absent) win over the file."""
    ini = IniFile.read(path, NODE_CONFIG_HINT)
    return node_config_from_ini(ini, overrides, required=required)


def _where(key: str, overrides: Mapping[str, Any], path: Path) -> str:
    """Where the value of `key` came from, for an error: the command line or the file."""
    return f"--{key.replace('_', '-')}" if key in overrides else f"{path}: [slapos] {key}"


def node_config_from_ini(
    ini: IniFile,
    overrides: Mapping[str, Any] | None = None,
    *,
    required: tuple[str, ...] = _NODE_REQUIRED,
) -> NodeConfig:
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = ini.path
    if not ini.has_section("slapos"):
        raise ConfigError(f"{path}: missing section [slapos]")
    sec = ini.section("slapos")

    def text(key: str) -> str | None:
        if key in overrides:
            return str(overrides[key])
        value = sec.get(key)
        return value.strip() if value is not None and value.strip() else None

    for key in required:
        if text(key) is None:
            state = "is empty" if sec.get(key) is not None else "is missing"
            raise ConfigError(f"{path}: [slapos] {key} {state}")

    def integer(key: str, default: int | None) -> int | None:
        value = text(key)
        return default if value is None else parse_int(value, f"{path}: [slapos] {key}")

    def boolean(key: str, default: bool) -> bool:
        if key in overrides:
            return bool(overrides[key])
        value = sec.get(key)
        return default if value is None else parse_bool(value, f"{path}: [slapos] {key}")

    key_file, cert_file = text("key_file"), text("cert_file")
    repo = text("certificate_repository_path")
    managers = (text("manager_list") or "").replace(",", " ").split()
    if managers:
        log.warning(
            "%s: [slapos] manager_list = %s is accepted and ignored: node managers "
            "(cpuset, devperm, portredir, prerm, whitelistfirewall) are not implemented",
            path,
            " ".join(managers),
        )
    return NodeConfig(
        path=path,
        computer_id=text("computer_id") or "",
        master_url=check_url(text("master_url") or "", _where("master_url", overrides, path)),
        software_root=Path(text("software_root") or "/opt/slapgrid"),
        instance_root=Path(text("instance_root") or "/srv/slapgrid"),
        key_file=key_file,
        cert_file=cert_file,
        master_ca_file=text("master_ca_file"),
        master_tls_verify=boolean("master_tls_verify", True),
        master_max_answer_mb=_positive(
            text("master_max_answer_mb"), f"{path}: [slapos] master_max_answer_mb"
        ),
        certificate_repository_path=Path(repo) if repo else None,
        shared_part_list=split_lines(sec.get("shared_part_list", "")),
        build_time_part_list=split_lines(sec.get("build_time_part_list", "")),
        buildout=text("buildout"),
        buildout_debug=boolean("buildout_debug", False),
        maximal_delay=integer("maximal_delay", 0) or 0,
        maximum_periodicity=integer("maximum_periodicity", 86400) or 0,
        promise_timeout=integer("promise_timeout", 20) or 20,
        partition_timeout=integer("partition_timeout", None),
        software_min_free_space=text("software_min_free_space") or "1000M",
        instance_min_free_space=text("instance_min_free_space") or "1000M",
        instance_storage_home=text("instance_storage_home"),
        ipv4_global_network=text("ipv4_global_network"),
        forbid_supervisord_automatic_launch=boolean("forbid_supervisord_automatic_launch", False),
        root_check=boolean("root_check", True),
        pidfile=text("pidfile"),
        pidfile_software=text("pidfile_software"),
        pidfile_instance=text("pidfile_instance"),
        pidfile_report=text("pidfile_report"),
        collect_cache=integer("collect_cache", 15) or 15,
        networkcache=NetworkCacheConfig.from_section(ini.section("networkcache")),
        ini=ini,
    )


def iter_multimaster_sections(ini: IniFile) -> Iterator[tuple[str, dict[str, str]]]:
    """[multimaster/<url>] sections of a proxy configuration."""
    for name in ini.sections():
        if name.startswith("multimaster/"):
            yield name[len("multimaster/") :], ini.section(name)
