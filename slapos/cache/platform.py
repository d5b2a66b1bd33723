"""Which machine a binary was built for, and whether it runs here.

A binary of a software release is tagged with the compiler's target triple (`multiarch`,
what `gcc -dumpmachine` prints) and the operating system as (id, version, codename), read
from os-release the way the `distro` package does. Two systems match when the triples are
equal and the OS tuples are equal after normalisation (upstream's rules: lower-case id,
raspbian is debian, Debian keeps its major version only and ignores the codename).

Pure functions, except `machine_platform`, which reads os-release and asks gcc (through a
Runner).
"""

from __future__ import annotations

import logging
import platform
import re
import shlex
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slapos.system import Runner

log = logging.getLogger(__name__)

OS_RELEASE_PATHS = (Path("/etc/os-release"), Path("/usr/lib/os-release"))

#: distro's normalisation of a few os-release ids (the ones found in shacache entries).
_ID_ALIASES = {"ol": "oracle", "opensuse-leap": "opensuse", "rhel": "rhel"}

OsTuple = tuple[str, str, str]


@dataclass(frozen=True)
class Platform:
    """What a binary needs: a target triple and an operating system."""

    multiarch: str
    os: OsTuple

    def accepts(self, multiarch: str, os: Sequence[str]) -> bool:
        """True when a binary built for (multiarch, os) runs on this platform."""
        return multiarch == self.multiarch and os_matches(os, self.os)


def normalise_os(os: Sequence[str]) -> OsTuple:
    """Upstream's comparison key for an OS tuple."""
    parts = [*(str(x) for x in os), "", "", ""][:3]
    name, version, codename = parts
    name = name.lower()
    if name == "raspbian":
        name = "debian"
    if name == "debian":
        # minor Debian releases are binary compatible; the codename was historically empty
        version = version.split(".")[0]
        codename = ""
    return name, version, codename


def os_matches(a: Sequence[str], b: Sequence[str]) -> bool:
    return normalise_os(a) == normalise_os(b)


def parse_os_release(text: str) -> OsTuple:
    """(id, version, codename) from the text of an os-release file."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:  # an unbalanced quote: take the value as written
            words = [raw.strip("\"'")]
        values[key.strip()] = words[0] if words else ""
    dist_id = values.get("ID", "").lower().replace(" ", "_")
    dist_id = _ID_ALIASES.get(dist_id, dist_id)
    version = values.get("VERSION_ID", "")
    codename = values.get("VERSION_CODENAME", "") or values.get("UBUNTU_CODENAME", "")
    if not codename:
        # "12 (bookworm)" or "22.04.3 LTS (Jammy Jellyfish)" -> the word in parentheses
        match = re.search(r"\(([^)]+)\)", values.get("VERSION", ""))
        if match:
            codename = match.group(1).split()[0].lower() if match.group(1) else ""
    return dist_id, version, codename


def distribution_tuple(paths: Sequence[Path] = OS_RELEASE_PATHS) -> OsTuple:
    """This machine's (id, version, codename); empty strings when unknown."""
    for path in paths:
        try:
            return parse_os_release(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    log.debug("no os-release file found; operating system unknown")
    return "", "", ""


def multiarch(runner: Runner | None = None) -> str:
    """The target triple: `gcc -dumpmachine`, else Python's MULTIARCH, else <machine>-linux-gnu."""
    if runner is not None:
        done = runner.run(["gcc", "-dumpmachine"], timeout=30)
        if done.ok and done.output.strip():
            return done.output.strip().splitlines()[-1].strip()
        log.debug("gcc -dumpmachine failed (%s); guessing the target triple", done.returncode)
    guess = sysconfig.get_config_var("MULTIARCH")
    if isinstance(guess, str) and guess:
        return guess
    return f"{platform.machine()}-linux-gnu"


def machine_platform(runner: Runner | None = None) -> Platform:
    """This machine's platform (gcc is asked when a runner is given)."""
    return Platform(multiarch(runner), distribution_tuple())
