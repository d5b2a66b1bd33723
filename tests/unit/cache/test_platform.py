from __future__ import annotations

import platform
from pathlib import Path

import pytest

from slapos.cache.platform import (
    Platform,
    distribution_tuple,
    multiarch,
    normalise_os,
    os_matches,
    parse_os_release,
)
from tests.unit.cache.conftest import gcc_runner

DEBIAN = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""
UBUNTU = """NAME="Ubuntu"
VERSION="22.04.3 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
VERSION_ID="22.04"
"""


def test_parse_os_release() -> None:
    assert parse_os_release(DEBIAN) == ("debian", "12", "bookworm")
    # no VERSION_CODENAME: the word in parentheses of VERSION
    assert parse_os_release(UBUNTU) == ("ubuntu", "22.04", "jammy")
    assert parse_os_release("") == ("", "", "")


def test_distribution_tuple_reads_first_existing_file(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text(DEBIAN)
    assert distribution_tuple([tmp_path / "missing", tmp_path / "os-release"])[0] == "debian"
    assert distribution_tuple([tmp_path / "missing"]) == ("", "", "")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("debian", "12.4", "bookworm"), ("Debian", "12", ""), True),
        (("raspbian", "11", "bullseye"), ("debian", "11.2", ""), True),
        (("debian", "11", ""), ("debian", "12", ""), False),
        (("ubuntu", "22.04", "jammy"), ("Ubuntu", "22.04", "jammy"), True),
        (("ubuntu", "22.04", "jammy"), ("ubuntu", "22.04.1", "jammy"), False),
        (("ubuntu", "22.04", "jammy"), ("ubuntu", "22.04", ""), False),
    ],
)
def test_os_matches(a: tuple[str, str, str], b: tuple[str, str, str], same: bool) -> None:
    assert os_matches(a, b) is same
    assert os_matches(b, a) is same


def test_normalise_short_tuples() -> None:
    assert normalise_os(["Debian", "12"]) == ("debian", "12", "")


def test_platform_accepts() -> None:
    here = Platform("x86_64-linux-gnu", ("debian", "12", "bookworm"))
    assert here.accepts("x86_64-linux-gnu", ["debian", "12", ""])
    assert not here.accepts("aarch64-linux-gnu", ["debian", "12", ""])
    assert not here.accepts("x86_64-linux-gnu", ["ubuntu", "22.04", "jammy"])


def test_multiarch_asks_gcc_then_guesses() -> None:
    runner = gcc_runner("riscv64-linux-gnu")
    assert multiarch(runner) == "riscv64-linux-gnu"
    assert runner.argvs == [("gcc", "-dumpmachine")]
    failing = gcc_runner("")  # gcc answers nothing: Python's MULTIARCH is the guess
    import sysconfig

    expected = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    assert multiarch(failing) == expected
    assert multiarch(None) == expected
