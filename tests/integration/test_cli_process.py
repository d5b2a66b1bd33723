"""`slapos` as a real process: exit codes, streams, shell completion."""

from __future__ import annotations

import subprocess
import sys

import pytest


def slapos(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slapos", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def test_version_on_stdout():
    result = slapos("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("slapos ")


def test_unknown_command_exit_5_one_line():
    result = slapos("frobnicate")
    assert result.returncode == 5
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "the command 'frobnicate' does not exist" in result.stderr


@pytest.mark.parametrize("argv", [("frobnicate",), ("help", "frobnicate")])
def test_unknown_command_same_level_as_upstream(argv):
    """`slapos nope` and `slapos help nope`: one CRITICAL line, exit 5, as upstream's."""
    result = slapos(*argv)
    assert result.returncode == 5
    [line] = result.stderr.strip().splitlines()
    assert " CRITICAL the command 'frobnicate' does not exist" in line


def test_missing_config_exit_1_no_traceback(tmp_path):
    result = slapos("supply", "http://x/sr.cfg", "COMP-1", "--cfg", str(tmp_path / "nope.cfg"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "nope.cfg" in result.stderr


def bash_complete(script: str, line: str) -> list[str]:
    words = line.split(" ")
    program = f"""
{script}
COMP_WORDS=({" ".join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
COMP_LINE={line!r}
COMP_POINT={len(line)}
_slapos
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.split()


@pytest.fixture(scope="module")
def bash_script() -> str:
    result = slapos("complete")
    assert result.returncode == 0
    return result.stdout


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("slapos no", ["node"]),
        ("slapos node so", ["software"]),
        ("slapos node su", ["supervisorctl", "supervisord"]),
        ("slapos cachelookup b", ["binary-sr"]),
        ("slapos request --parameters-", ["--parameters-file"]),
        ("slapos node software --only", ["--only", "--only-sr"]),
        ("slapos -v node in", ["instance"]),
    ],
)
def test_bash_completion(bash_script, line, expected):
    assert sorted(bash_complete(bash_script, line)) == expected


def test_fish_completion_is_sorted_and_names_commands():
    result = slapos("complete", "--shell", "fish")
    assert result.returncode == 0
    assert "## command node software" in result.stdout
    assert "-l only-sr" in result.stdout
