"""The test doubles of slapos's injected parts, each checked by mypy against the protocol it
stands for (`slapos.system.Runner`, `slapos.system.Clock`): use these rather than writing
another one in a test module."""

from __future__ import annotations

from tests.fakes.clock import FakeClock
from tests.fakes.runner import Call, FakeRunner, UnscriptedCommand

__all__ = ["Call", "FakeClock", "FakeRunner", "UnscriptedCommand"]
