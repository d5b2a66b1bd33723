"""Fixtures of the cache unit tests: signing material, an in-thread cache server, a runner
that answers `gcc -dumpmachine` without running anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slapos.system import Completed
from tests.fixtures.cache import RunningCache, Signing, make_signing, serve_cache


class GccRunner:
    """Answers `gcc -dumpmachine` with a fixed triple; records what was asked."""

    def __init__(self, triple: str = "x86_64-linux-gnu") -> None:
        self.triple = triple
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv, **kw):
        self.calls.append(tuple(argv))
        return Completed(tuple(argv), 0, self.triple + "\n")


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
def runner() -> GccRunner:
    return GccRunner()
