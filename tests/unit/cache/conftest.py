"""Fixtures of the cache unit tests: signing material, an in-thread cache server, a runner
that answers `gcc -dumpmachine` without running anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeRunner
from tests.fixtures.cache import RunningCache, Signing, make_signing, serve_cache


def gcc_runner(triple: str = "x86_64-linux-gnu") -> FakeRunner:
    """Answers `gcc -dumpmachine` with `triple`, refuses any other command."""
    return FakeRunner({("gcc", "-dumpmachine"): (0, triple + "\n")})


@pytest.fixture(scope="session")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Signing:
    return make_signing(tmp_path_factory.mktemp("signing"), "uploader")


@pytest.fixture(scope="session")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Signing:
    return make_signing(tmp_path_factory.mktemp("stranger"), "stranger")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[RunningCache]:
    with serve_cache(tmp_path / "cache") as running:
        yield running


@pytest.fixture
def runner() -> FakeRunner:
    return gcc_runner()
