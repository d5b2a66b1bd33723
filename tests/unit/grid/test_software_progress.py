"""Progress of software builds (slapos.grid.progress) and small helpers (grid.utils)."""

from __future__ import annotations

import io
import logging

import pytest

from slapos.errors import ConfigError
from slapos.grid.progress import (
    BuildState,
    LogProgress,
    TerminalProgress,
    describe,
    elapsed,
    render,
    shorten,
)
from slapos.grid.utils import failure_reason, human_size, parse_size
from tests.fakes import FakeClock


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("Installing gcc.", "installing part gcc"),
        ("Updating instance-profile.", "updating part instance-profile"),
        ("Uninstalling old.", "uninstalling part old"),
        (
            "Develop: '/srv/src/my.recipe/'",
            "developing my.recipe (pip install -e, with its build requirements)",
        ),
        ("Getting distribution for 'zc.recipe.egg>=2'.", "getting zc.recipe.egg>=2"),
        ("Downloading https://x/y/gcc-13.tar.gz", "downloading gcc-13.tar.gz"),
        ("  Installing gcc.", None),  # the "While:" trace repeats it indented
        ("checking for gcc... yes", None),
    ],
)
def test_describe(line: str, text: str | None) -> None:
    assert describe(line) == text


def test_build_state_counts_finished_parts() -> None:
    state = BuildState("u", 0.0)
    for line in ["Getting distribution for 'a'.", "Installing a.", "noise", "Installing b."]:
        state.feed(line)
    assert state.activity == "installing part b"
    assert state.parts_done == 1


def test_render_fits_the_width_and_keeps_the_activity() -> None:
    state = BuildState("https://lab.example.com/very/long/path/" + "x" * 80 + "/software.cfg", 0.0)
    state.feed("Installing openssl.")
    line = render(state, 65.0, 80)
    assert len(line) <= 80
    assert line.startswith("[0:01:05] build")
    assert line.endswith("installing part openssl")
    assert "…" in line
    assert render(state, 3725.0, 30).startswith("[1:02:05]")


def test_helpers() -> None:
    assert elapsed(59) == "0:00:59"
    assert shorten("abcdefghij", 5) == "abcde"
    assert shorten("abcdefghijkl", 9) == "abcd…ijkl"


def test_terminal_progress_redraws_one_line_then_ends_it() -> None:
    clock = FakeClock()
    out = io.StringIO()
    progress = TerminalProgress(clock, stream=out, width=60, interval=3600)
    state = progress.start("/srv/sr/software.cfg")
    clock.now += 5
    progress.line(state, "Installing hello.")
    progress.line(state, "some compiler noise")  # no redraw for noise
    progress.finish(state, True, "built")
    progress.close()
    text = out.getvalue()
    frames = text.split("\r\x1b[2K")[1:]
    assert len(frames) == 3
    assert "installing part hello" in frames[1]
    assert frames[2].endswith("built\n")
    assert text.count("\n") == 1


def test_log_progress_logs_when_the_activity_changes(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    progress = LogProgress(clock)
    with caplog.at_level(logging.INFO, logger="slapos.grid.progress"):
        state = progress.start("/sr.cfg")
        progress.line(state, "Installing a.")
        progress.line(state, "noise")
        progress.update(state, mode="cache", activity="looking in the binary cache")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "/sr.cfg: installing part a (0:00:00 elapsed)",
        "/sr.cfg: looking in the binary cache",
    ]


def test_parse_size() -> None:
    assert parse_size("1000M") == 1000 * 1024**2
    assert parse_size("2G") == 2 * 1024**3
    assert parse_size("512") == 512
    assert parse_size("1.5k") == 1536
    with pytest.raises(ConfigError, match="expected a size"):
        parse_size("lots")
    assert human_size(1536) == "1.5 KiB"


@pytest.mark.parametrize(
    ("output", "code", "reason"),
    [
        ("Installing x.\nWhile:\n  Installing x.\nError: no space left\n", 1, "no space left"),
        (
            "Traceback (most recent call last):\n  File x\nOSError: [Errno 28] full\n",
            1,
            "OSError: [Errno 28] full",
        ),
        ("Installing x.\n", -9, "buildout was killed by signal 9"),
        ("", 3, "buildout exited with status 3"),
        (
            "Restarting.\nWhile:\n  Installing.\n  Getting section p.\n  Initializing section p.\n"
            "  Loading zc.buildout recipe entry slapos.recipe.template:jinja3.\n\n"
            "An internal error occurred due to a bug in either zc.buildout or in a\n"
            "Traceback (most recent call last):\n  File x\n"
            "ImportError: Entry point ('zc.buildout', 'jinja3') not found\n",
            1,
            "cannot load recipe slapos.recipe.template:jinja3: "
            "ImportError: Entry point ('zc.buildout', 'jinja3') not found",
        ),
        (
            "While:\n  Installing.\n  Getting section p.\n  Initializing section p.\n"
            "  Installing recipe slapos.recipe.nosuch.\n"
            "  Getting distribution for 'slapos.recipe.nosuch'.\n"
            "Error: Couldn't find a distribution for 'slapos.recipe.nosuch'.\n",
            1,
            "Couldn't find a distribution for 'slapos.recipe.nosuch'.",
        ),
        (
            "While:\n  Installing.\n  Loading recipe 'slapos.recipe.build'.\n"
            "Traceback (most recent call last):\n"
            "ModuleNotFoundError: No module named 'slapos.recipe'\n",
            1,
            "cannot load recipe slapos.recipe.build: "
            "ModuleNotFoundError: No module named 'slapos.recipe'",
        ),
    ],
)
def test_failure_reason(output: str, code: int, reason: str) -> None:
    assert failure_reason(output, code) == reason


def test_terminal_progress_erases_its_line_before_a_log_line() -> None:
    clock = FakeClock()
    out = io.StringIO()
    progress = TerminalProgress(clock, stream=out, width=60, interval=3600)
    handler = logging.StreamHandler(out)
    handler.addFilter(progress.clear_for_log)
    logger = logging.getLogger("tests.progress.clear")
    logger.addHandler(handler)
    try:
        state = progress.start("/sr.cfg")
        logger.warning("cache unreachable")
        progress.finish(state, True, "built")
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
        progress.close()
    text = out.getvalue()
    assert "starting\r\x1b[2Kcache unreachable\n" in text
    assert text.endswith("built\nafter\n")
