"""Exit codes and the error hierarchy.

Exit codes are a public API: cron jobs and upstream tooling read them. Every code the
`slapos` command can return is defined here and documented in docs/exit-codes.rst.
Library code raises these errors; only slapos.cli.main turns them into a process status.
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # typing is not imported at run time: every command imports this
if TYPE_CHECKING:
    from typing import ClassVar


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    #: node instance / node promise: everything processed, but a promise failed.
    PROMISE_FAILURE = 2
    #: node format: formatted, but the master could not be told (upstream value).
    FORMAT_OFFLINE_SUCCESS = 2
    #: node instance: master unreachable, local services started from what is on disk.
    OFFLINE_SUCCESS = 3
    #: node instance|software|report --dry-run: a real run would change something.
    CHANGES_PENDING = 4
    #: unknown command, or a root-only command run by another user (upstream value).
    NOT_ROOT = 5
    UNKNOWN_COMMAND = 5
    #: another slapos process holds the pid file.
    ALREADY_RUNNING = 10
    BUG = 70
    INTERRUPTED = 130
    #: node prune refused to run (upstream value).
    PRUNE_REFUSED = 255


class SlapOSError(Exception):
    """An expected failure: reported as one line on stderr, no traceback."""

    exit_code: ClassVar[int] = ExitCode.FAILURE


class UsageError(SlapOSError):
    """Bad command line: nothing was tried."""

    exit_code = ExitCode.USAGE


class UnknownCommandError(SlapOSError):
    """The command words name no command."""

    exit_code = ExitCode.UNKNOWN_COMMAND


class ConfigError(SlapOSError):
    """A configuration file is missing, unreadable or lacks a key.

    The message names file, section and key. Exit 1, as upstream: cron scripts read it.
    """

    exit_code = ExitCode.FAILURE


class NotRootError(SlapOSError):
    exit_code = ExitCode.NOT_ROOT


class AlreadyRunningError(SlapOSError):
    exit_code = ExitCode.ALREADY_RUNNING


class MasterError(SlapOSError):
    """Talking to the master failed (HTTP status, TLS, timeout, malformed answer)."""


class NotReadyError(SlapOSError):
    """The master accepted the request but has not processed it yet (request, service info)."""

    exit_code = ExitCode.USAGE  # upstream: 2 means "not ready yet, rerun later"


class NotFoundError(SlapOSError):
    """The master does not know the named object (service info, computer info...)."""

    exit_code = ExitCode.USAGE  # upstream value for these commands


class BuildoutError(SlapOSError):
    """A zc.buildout run failed; the message says where its log is."""


class PromiseError(SlapOSError):
    exit_code = ExitCode.PROMISE_FAILURE
