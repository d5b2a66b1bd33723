"""Small pure helpers of the node engine: SR hashes, sizes, free space, failure reasons."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from slapos.errors import ConfigError

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def software_hash(url: str) -> str:
    """The directory name of a software release: the MD5 of its URL (upstream's rule)."""
    return hashlib.md5(url.encode("utf-8")).hexdigest()


def is_software_hash(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


def parse_size(text: str, where: str = "size") -> int:
    """`1000M` -> bytes (1M = 1 MiB, as upstream); a bare number is bytes."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(f"{where}: expected a size such as 1000M or 2G, got {text!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def free_space(path: Path) -> int:
    """Bytes available at `path` (or its nearest existing ancestor).

    Counts the blocks available to unprivileged users, as upstream does even for root:
    the build runs as the software user, who cannot use the reserved blocks.
    """
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


_NOISE = ("While:", "  ", "Traceback", "An internal error occurred")


#: The step of zc.buildout's "While:" block that says it was getting or loading a recipe.
_RECIPE_STEP = re.compile(
    r"^\s+(?:Loading zc\.buildout recipe entry (?P<entry>\S+?)\.?"
    r"|Loading recipe '?(?P<spec>[^'\s]+?)'?\.?"
    r"|Installing recipe (?P<installing>\S+?)\.?)$"
)


def failure_reason(output: str, returncode: int | None = None) -> str:
    """One line that says why a buildout run failed, taken from its output.

    zc.buildout ends a failed run with `Error: <reason>`; an internal error ends with the
    exception line of the traceback. A killed process says nothing at all. When buildout
    failed while getting or loading a recipe, the reason starts with that recipe's name.
    """
    reason = _last_reason(output, returncode)
    recipe = failed_recipe(output)
    if recipe and recipe not in reason:
        return f"cannot load recipe {recipe}: {reason}"
    return reason


def failed_recipe(output: str) -> str | None:
    """The recipe buildout was getting or loading when it failed (its last "While:" step)."""
    steps = re.split(r"(?m)^While:$", output)
    if len(steps) < 2:
        return None
    block = []
    for line in steps[-1].splitlines()[1:]:
        if not line.startswith("  "):
            break
        block.append(line)
    match = _RECIPE_STEP.match(block[-1]) if block else None
    if match is None:
        return None
    return match.group("entry") or match.group("spec") or match.group("installing")


def _last_reason(output: str, returncode: int | None) -> str:
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Error: "):
            return line[len("Error: ") :].strip()
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b", line):
            return line.strip()
    if returncode is not None and returncode < 0:
        return f"buildout was killed by signal {-returncode}"
    for line in reversed(lines):
        if not line.startswith(_NOISE):
            return line.strip()
    return f"buildout exited with status {returncode}" if returncode else "buildout failed"
