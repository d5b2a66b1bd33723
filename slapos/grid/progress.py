"""Live progress of software release builds.

Upstream shows nothing while a release builds (minutes to hours). We follow buildout's own
output ("Installing <part>.", "Getting distribution for ...") and show, per release, what
it is doing, for how long, and whether it came from the binary cache or is being built:

* `TerminalProgress`: one status line per release, redrawn in place every second
  (carriage return + erase line); the line is kept, finished, when the release is done.
* `LogProgress`: for cron and files: an INFO log line each time the release moves to a new
  part, nothing redrawn.

The parsing (`BuildState.feed`) and rendering (`render`) are pure; only the two reporters
write.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from slapos.system import Clock

log = logging.getLogger(__name__)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Installing (?P<x>[^\s]+)\.$"), "installing part {x}"),
    (re.compile(r"^Updating (?P<x>[^\s]+)\.$"), "updating part {x}"),
    (re.compile(r"^Uninstalling (?P<x>[^\s]+)\.$"), "uninstalling part {x}"),
    (
        re.compile(r"^Develop: '(?P<x>.+)'$"),
        "developing {x} (pip install -e, with its build requirements)",
    ),
    (re.compile(r"^Getting distribution for '(?P<x>.+)'\.$"), "getting {x}"),
    (re.compile(r"^Downloading (?P<x>\S+)"), "downloading {x}"),
    (re.compile(r"^Generated script '(?P<x>.+)'\.$"), "generated {x}"),
)


def describe(line: str) -> str | None:
    """What a buildout output line says it is doing, or None for any other line."""
    for pattern, text in _PATTERNS:
        # exact lines only: buildout repeats "  Installing x." indented after "While:"
        match = pattern.match(line.rstrip())
        if match:
            value = match.group("x")
            if text.startswith(("developing", "generated", "downloading")):
                value = value.rstrip("/").rsplit("/", 1)[-1] or value
            return text.format(x=value)
    return None


@dataclass
class BuildState:
    """What one release is doing, as far as its output tells."""

    url: str
    started: float
    #: "build", "cache" (looking in / installed from the binary cache), "destroy"
    mode: str = "build"
    activity: str = "starting"
    parts_done: int = 0
    finished: bool = False
    ok: bool = True
    _in_part: bool = field(default=False, repr=False)

    def feed(self, line: str) -> bool:
        """Take one output line; True when the activity changed."""
        text = describe(line)
        if text is None:
            return False
        if self._in_part:
            self.parts_done += 1
        self._in_part = text.startswith(("installing part", "updating part"))
        self.activity = text
        return True


def elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def shorten(text: str, width: int) -> str:
    """`text` cut in its middle to `width` characters."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width < 8:
        return text[:width]
    keep = width - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


def render(state: BuildState, now: float, width: int = 100) -> str:
    """`[0:01:05] build  <url>  installing part gcc (12 parts done)`, fitted to `width`."""
    head = f"[{elapsed(now - state.started)}] {state.mode:<7}"
    if state.finished:
        tail = state.activity
    else:
        plural = "s" if state.parts_done > 1 else ""
        done = f" ({state.parts_done} part{plural} done)" if state.parts_done else ""
        tail = state.activity + done
    room = width - len(head) - len(tail) - 4
    if room < 12:  # narrow terminal: drop the URL rather than the activity
        return shorten(f"{head} {tail}", width)
    return f"{head} {shorten(state.url, room)}  {tail}"


class Progress(Protocol):
    """Told about each release the engine handles."""

    def start(self, url: str, mode: str = "build") -> BuildState: ...
    def update(self, state: BuildState, *, mode: str | None = None, activity: str) -> None: ...
    def line(self, state: BuildState, text: str) -> None: ...
    def finish(self, state: BuildState, ok: bool, summary: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class NoProgress:
    """Shows nothing (tests, --quiet)."""

    clock: Clock

    def start(self, url: str, mode: str = "build") -> BuildState:
        return BuildState(url, self.clock.monotonic(), mode)

    def update(self, state: BuildState, *, mode: str | None = None, activity: str) -> None:
        state.mode = mode or state.mode
        state.activity = activity

    def line(self, state: BuildState, text: str) -> None:
        state.feed(text)

    def finish(self, state: BuildState, ok: bool, summary: str) -> None:
        state.finished, state.ok, state.activity = True, ok, summary

    def close(self) -> None:
        pass


@dataclass
class LogProgress(NoProgress):
    """Plain log lines when the activity changes (no terminal: cron, files)."""

    def update(self, state: BuildState, *, mode: str | None = None, activity: str) -> None:
        super().update(state, mode=mode, activity=activity)
        log.info("%s: %s", state.url, activity)

    def line(self, state: BuildState, text: str) -> None:
        if state.feed(text):
            log.info(
                "%s: %s (%s elapsed)",
                state.url,
                state.activity,
                elapsed(self.clock.monotonic() - state.started),
            )


@dataclass
class TerminalProgress(NoProgress):
    """One line per release, redrawn in place every `interval` seconds by a thread."""

    stream: TextIO | None = None
    width: int = 100
    interval: float = 1.0
    _current: BuildState | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def _draw(self, final: bool = False) -> None:
        state, stream = self._current, self.stream
        if state is None or stream is None:
            return
        text = render(state, self.clock.monotonic(), self.width - 1)
        stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._draw()

    def start(self, url: str, mode: str = "build") -> BuildState:
        state = super().start(url, mode)
        with self._lock:
            self._current = state
            self._draw()
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._thread.start()
        return state

    def update(self, state: BuildState, *, mode: str | None = None, activity: str) -> None:
        with self._lock:
            super().update(state, mode=mode, activity=activity)
            self._draw()

    def line(self, state: BuildState, text: str) -> None:
        with self._lock:
            if state.feed(text):
                self._draw()

    def finish(self, state: BuildState, ok: bool, summary: str) -> None:
        with self._lock:
            super().finish(state, ok, summary)
            self._draw(final=True)
            self._current = None

    def clear_for_log(self, record: logging.LogRecord) -> bool:
        """A logging filter: erase the status line before a log line is printed.

        The next tick draws it again below the log line.
        """
        with self._lock:
            if self._current is not None and self.stream is not None:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._current is not None:
                self._draw(final=True)
                self._current = None
