"""The test doubles of slapos's injected parts, checked by mypy (the runner and the clock
against the protocols they stand for, `slapos.system.Runner` and `slapos.system.Clock`):
use these rather than writing another one in a test module. `tests.fakes.master` holds
`FakeMaster`, an HTTP master on 127.0.0.1 (its `fake_master` fixture is imported by the
tests that use it)."""

from __future__ import annotations

from tests.fakes.clock import FakeClock
from tests.fakes.runner import Call, FakeRunner, UnscriptedCommand

__all__ = ["Call", "FakeClock", "FakeRunner", "UnscriptedCommand"]
