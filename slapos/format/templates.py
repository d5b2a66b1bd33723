"""The configuration files node register and configure local write, as text.

Our own layout (not upstream's example file): only keys the node reads, each section
introduced by a comment saying what it is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Entry = tuple[str, str] | str  # (key, value), or a comment line

#: The public caches of the SlapOS community (source cache and binary cache).
PUBLIC_CACHE_URL = "http://shacache.nxdcdn.com"
PUBLIC_DIR_URL = "http://shadir.nxdcdn.com"


def render_ini(sections: Sequence[tuple[str, Sequence[Entry]]], header: str = "") -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, entries in sections:
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        for entry in entries:
            if isinstance(entry, str):
                lines.append(f"# {entry}")
            else:
                key, value = entry
                lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NodeSettings:
    """The values a generated slapos.cfg carries."""

    computer_id: str
    master_url: str
    software_root: str
    instance_root: str
    interface_name: str
    ipv4_local_network: str
    partition_amount: int
    computer_xml: str
    format_log_file: str
    create_tap: bool = False
    #: partition N runs as user f"{user_base_name}{N}"; software is built by software_user
    user_base_name: str = "slapuser"
    software_user: str = "slapsoft"
    ipv6_interface: str | None = None
    key_file: str | None = None
    cert_file: str | None = None
    certificate_repository_path: str | None = None
    #: extra [slapos] keys (root_check, pidfiles ...)
    extra_slapos: tuple[tuple[str, str], ...] = ()
    #: extra [slapformat] keys (alter_user, alter_network ...)
    extra_slapformat: tuple[tuple[str, str], ...] = ()
    #: [networkcache] entries; empty means no section (no network needed)
    networkcache: tuple[tuple[str, str], ...] = field(default=())


def node_config(settings: NodeSettings, header: str) -> str:
    """A complete slapos.cfg for `settings`."""
    slapos: list[Entry] = [
        "the identifier the master knows this node by, and where the master is",
        ("computer_id", settings.computer_id),
        ("master_url", settings.master_url),
    ]
    if settings.key_file and settings.cert_file:
        slapos += [
            "this node's key and certificate, and where partition certificates are kept",
            ("key_file", settings.key_file),
            ("cert_file", settings.cert_file),
        ]
    if settings.certificate_repository_path:
        slapos.append(("certificate_repository_path", settings.certificate_repository_path))
    slapos += [
        "software releases are built under software_root, instances run under instance_root",
        ("software_root", settings.software_root),
        ("instance_root", settings.instance_root),
        *settings.extra_slapos,
    ]
    slapformat: list[Entry] = [
        "how `slapos node format` cuts this node into partitions",
        ("interface_name", settings.interface_name),
    ]
    if settings.ipv6_interface:
        slapformat.append(("ipv6_interface", settings.ipv6_interface))
    slapformat += [
        ("ipv4_local_network", settings.ipv4_local_network),
        ("partition_amount", str(settings.partition_amount)),
        ("create_tap", "True" if settings.create_tap else "False"),
        ("computer_xml", settings.computer_xml),
        ("log_file", settings.format_log_file),
        ("partition_base_name", "slappart"),
        ("user_base_name", settings.user_base_name),
        ("tap_base_name", "slaptap"),
        ("software_user", settings.software_user),
        *settings.extra_slapformat,
    ]
    sections: list[tuple[str, Sequence[Entry]]] = [("slapos", slapos), ("slapformat", slapformat)]
    if settings.networkcache:
        sections.append(
            ("networkcache", ["caches of downloads and of built software", *settings.networkcache])
        )
    return render_ini(sections, header)


def public_networkcache() -> tuple[tuple[str, str], ...]:
    return (
        ("download-binary-cache-url", PUBLIC_CACHE_URL),
        ("download-binary-dir-url", PUBLIC_DIR_URL),
        ("download-cache-url", PUBLIC_CACHE_URL),
        ("download-dir-url", PUBLIC_DIR_URL),
    )
