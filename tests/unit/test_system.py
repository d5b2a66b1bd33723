"""`slapos.system.wait_until` and `retry`: the one wait-until-deadline loop and the one
retry policy, on a FakeClock."""

from __future__ import annotations

import pytest

from slapos.system import retry, wait_until
from tests.fakes import FakeClock


def test_ready_at_once_never_sleeps() -> None:
    clock = FakeClock()
    assert wait_until(lambda: True, 10, clock=clock)
    assert clock.sleeps == []


def test_polls_until_ready() -> None:
    clock = FakeClock()
    answers = iter([False, False, True])
    assert wait_until(lambda: next(answers), 10, clock=clock, pause=0.5)
    assert clock.sleeps == [0.5, 0.5]


def test_gives_up_at_the_deadline_without_sleeping_past_it() -> None:
    clock = FakeClock(start=100.0)
    calls: list[float] = []

    def never() -> bool:
        calls.append(clock.now)
        return False

    assert not wait_until(never, 1.0, clock=clock, pause=0.375)
    assert clock.sleeps == [0.375, 0.375, 0.25]  # the last pause is cut at the deadline
    assert calls == [100.0, 100.375, 100.75, 101.0]  # asked once more at the deadline


def test_backoff_is_bounded_and_on_wait_hears_the_time_left() -> None:
    clock = FakeClock()
    remaining: list[float] = []
    assert not wait_until(
        lambda: False,
        10,
        clock=clock,
        pause=1,
        backoff=2,
        max_pause=3,
        on_wait=remaining.append,
    )
    assert clock.sleeps == [1, 2, 3, 3, 1]
    assert remaining == [10, 9, 7, 4, 1]


def test_retry_sleeps_its_delays_on_transient_errors_only() -> None:
    clock, calls = FakeClock(), list[int]()

    def flaky() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise TimeoutError("not yet")
        return "done"

    said: list[float] = []
    transient = lambda exc: isinstance(exc, TimeoutError)  # noqa: E731
    assert retry(flaky, [1, 2, 4], transient, clock=clock, on_retry=lambda e, d: said.append(d))
    assert (clock.sleeps, said, len(calls)) == ([1, 2], [1, 2], 3)

    calls.clear()
    with pytest.raises(TimeoutError):  # the delays run out: the last error propagates
        retry(flaky, [5], transient, clock=clock)
    assert (clock.sleeps[2:], len(calls)) == ([5], 2)

    def broken() -> str:
        raise ValueError("bad input")

    with pytest.raises(ValueError):  # not transient: no second call, no sleep
        retry(broken, [7], transient, clock=clock)
    assert 7 not in clock.sleeps
