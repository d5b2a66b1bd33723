"""`FakeClock`: a `slapos.system.Clock` whose time moves only when the code sleeps."""

from __future__ import annotations

from collections.abc import Callable

from slapos.system import Clock


class FakeClock:
    """Starts at `start`; `sleep(s)` records `s` and moves both time() and monotonic() on.

    `advance(s)` moves time without a sleep (another thread's work, a slow command);
    `on_sleep(n)`, if given, is called after the n-th sleep (the world changing meanwhile).
    """

    def __init__(
        self, start: float = 0.0, *, on_sleep: Callable[[int], None] | None = None
    ) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))

    def advance(self, seconds: float) -> None:
        self.now += seconds


_check: Clock = FakeClock()  # mypy: the fake stands for the protocol
