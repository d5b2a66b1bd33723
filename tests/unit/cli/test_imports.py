"""`slapos --help` stays fast: it imports none of the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = [
    "requests", "urllib3", "lxml", "cryptography", "IPython", "supervisor", "psutil",
    "netifaces", "pyroute2", "xml_marshaller", "gunicorn", "zc.buildout", "sqlite3",
    "jsonschema", "yaml", "slapos.slap", "slapos.proxy", "slapos.grid", "slapos.format",
    "slapos.collect", "slapos.cache",
]  # fmt: skip

PROBE = """
import sys

import pytest
from slapos.cli.main import main
import io, contextlib
out = io.StringIO()
with contextlib.redirect_stdout(out):
    status = main({argv!r})
loaded = [m for m in {heavy!r} if m in sys.modules]
print(status, ",".join(loaded))
"""


def probe(argv: list[str]) -> tuple[int, list[str]]:
    code = PROBE.format(argv=argv, heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    status, _, loaded = result.stdout.strip().rpartition("\n")[2].partition(" ")
    return int(status), [m for m in loaded.split(",") if m]


def test_global_help_imports_nothing_heavy():
    status, loaded = probe(["--help"])
    assert status == 0
    assert loaded == []


def test_command_help_imports_nothing_heavy():
    for argv in (["request", "--help"], ["node", "software", "--help"], ["--version"]):
        status, loaded = probe(argv)
        assert status == 0
        assert loaded == [], argv


def one_command_per_module() -> list[str]:
    from slapos.cli.registry import COMMANDS

    first: dict[str, str] = {}
    for words, module in COMMANDS.items():
        first.setdefault(module, words)
    return sorted(first.values())


@pytest.mark.parametrize("words", one_command_per_module())
def test_every_modules_command_help_imports_nothing_heavy(words):
    """Each module of slapos.cli.registry keeps its heavy imports inside its handlers."""
    status, loaded = probe([*words.split(), "--help"])
    assert status == 0
    assert loaded == [], words
