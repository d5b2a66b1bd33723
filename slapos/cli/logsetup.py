"""Logging handlers for the `slapos` command: the only place that adds handlers.

Console (stderr): WARNING with -q, INFO by default, DEBUG with -v; lines look like
upstream's, `<time> slapos[<pid>] <LEVEL> <message>`, coloured on a terminal.
Log file (--log-file): always DEBUG, `[<time>,<ms>] <LEVEL> <message>`, appended.
"""

from __future__ import annotations

import logging
import os
from typing import TextIO

_COLOURS = {
    logging.CRITICAL: "\033[1;31m",
    logging.ERROR: "\033[0;31m",
    logging.WARNING: "\033[0;33m",
    logging.DEBUG: "\033[0;32m",
}
_RESET = "\033[0m"


class ConsoleFormatter(logging.Formatter):
    """`<time> slapos[<pid>] <LEVEL> <message>`: our module loggers all show as `slapos`."""

    def __init__(self, *, timestamps: bool, colour: bool) -> None:
        super().__init__(datefmt="%Y-%m-%d %H:%M:%S")
        self.timestamps = timestamps
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        name = "slapos" if record.name.startswith("slapos") else record.name
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        who = f"{name}[{record.process}]"
        level = record.levelname
        stamp = self.formatTime(record, self.datefmt) if self.timestamps else ""
        if self.colour:
            colour = _COLOURS.get(record.levelno, "")
            if stamp:
                stamp = f"\033[0;32m{stamp}{_RESET}"
            who = f"\033[0;34m{who}{_RESET}"
            level = f"\033[1;30m{level}{_RESET}"
            if colour:
                message = f"{colour}{message}{_RESET}"
        return f"{stamp} {who} {level} {message}" if stamp else f"{who} {level} {message}"


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that drops tracebacks unless asked to show them."""

    def __init__(self, stream: TextIO, *, tracebacks: bool) -> None:
        super().__init__(stream)
        self.tracebacks = tracebacks

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not self.tracebacks:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        super().emit(record)


def setup_logging(
    verbosity: int,
    *,
    stream: TextIO,
    log_file: str | None = None,
    tracebacks: bool = False,
    timestamps: bool = True,
    colour: bool | None = None,
) -> None:
    """Configure the root logger for one `slapos` run (verbosity 0, 1 or 2+)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_slapos", False):
            root.removeHandler(handler)
            handler.close()
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    if colour is None:
        colour = hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"
    console = ConsoleHandler(stream, tracebacks=tracebacks or verbosity >= 2)
    console.setLevel(level)
    console.setFormatter(ConsoleFormatter(timestamps=timestamps, colour=bool(colour)))
    console._slapos = True  # type: ignore[attr-defined]
    root.addHandler(console)
    root.setLevel(logging.DEBUG if log_file else level)
    if log_file:
        add_file_log(log_file)
    # Third-party chatter stays at WARNING on the console even with -v.
    for noisy in ("urllib3", "charset_normalizer"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)


def add_file_log(path: str) -> None:
    """Add a DEBUG log file (append mode); used by --log-file and config `log_file` keys."""
    root = logging.getLogger()
    path = os.path.expanduser(path)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == os.path.abspath(
            path
        ):
            return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-8s %(message)s"))
    handler._slapos = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
