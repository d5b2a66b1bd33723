"""The operating system, behind small objects that tests can replace.

`Runner` runs programs (the only module allowed to import subprocess), `Clock` tells and
waits for time, `wait_until` and `retry` are the one deadline loop and the one retry policy
(both on a Clock), `PidFile` is the lock that keeps two node runs apart. Production instances
are built once, in slapos.cli.context.Context.from_process().
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol, TypeVar

from slapos.errors import AlreadyRunningError, ConfigError, SlapOSError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Credentials:
    """Who a child process runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    @classmethod
    def owner_of(cls, path: Path) -> Credentials:
        """The owner of `path`, with the supplementary groups of that user when known."""
        import pwd

        st = path.stat()
        groups: tuple[int, ...] = ()
        try:
            name = pwd.getpwuid(st.st_uid).pw_name
            groups = tuple(os.getgrouplist(name, st.st_gid))
        except KeyError:  # an owner with no passwd entry: run with its primary group only
            pass
        return cls(st.st_uid, st.st_gid, groups)


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        user: Credentials | None = None,
        umask: int | None = None,
        timeout: float | None = None,
        on_line: Callable[[str], None] | None = None,
        capture: bool = True,
    ) -> Completed: ...


@dataclass
class SubprocessRunner:
    """Runs programs for real.

    stdin is /dev/null; stdout and stderr are merged and captured (and fed line by line to
    `on_line`) unless `capture` is false, in which case the child writes to our own
    terminal. A child that outlives `timeout` has its whole process group killed.
    """

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        user: Credentials | None = None,
        umask: int | None = None,
        timeout: float | None = None,
        on_line: Callable[[str], None] | None = None,
        capture: bool = True,
    ) -> Completed:
        argv = tuple(str(a) for a in argv)
        log.debug("running %s (cwd %s)", " ".join(argv), cwd or ".")
        uid: int | None = None
        gid: int | None = None
        groups: list[int] | None = None
        if user is not None and os.geteuid() == 0:
            if user.uid == 0 or user.gid == 0:
                raise SlapOSError(f"refusing to run {argv[0]} as root: {cwd} is owned by root")
            uid, gid, groups = user.uid, user.gid, list(user.groups)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None,
                start_new_session=True,
                close_fds=True,
                umask=umask if umask is not None else -1,
                text=True,
                errors="replace",
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        except FileNotFoundError as exc:
            return Completed(argv, 127, f"{argv[0]}: {exc.strerror}")
        except PermissionError as exc:
            return Completed(argv, 126, f"{argv[0]}: {exc.strerror}")
        timed_out = threading.Event()
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, _kill_group, (proc, timed_out))
            timer.daemon = True
            timer.start()
        chunks: list[str] = []
        try:
            if capture:
                assert proc.stdout is not None
                for line in proc.stdout:
                    chunks.append(line)
                    if on_line is not None:
                        on_line(line.rstrip("\n"))
            proc.wait()
        except BaseException:
            _kill_group(proc, None)
            proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return Completed(argv, proc.returncode, "".join(chunks), timed_out.is_set())


def _kill_group(proc: subprocess.Popen[str], flag: threading.Event | None) -> None:
    if flag is not None:
        flag.set()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def exec_program(argv: Sequence[str]) -> int:
    """Run a program attached to our terminal (supervisorctl, ...) and return its status."""
    try:
        return subprocess.call([str(a) for a in argv])
    except FileNotFoundError:
        raise SlapOSError(f"cannot run {argv[0]}: not found") from None


class Clock(Protocol):
    """Time as slapos reads and waits for it: the one way time is injected (tests pass
    tests/fakes FakeClock)."""

    def time(self) -> float: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    *,
    clock: Clock | None = None,
    pause: float = 0.1,
    backoff: float = 1.0,
    max_pause: float | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> bool:
    """Call `ready()` until it is true (return True) or `timeout` seconds have passed
    (return False): the one wait-until-deadline loop of slapos.

    Between calls it sleeps `pause` seconds, multiplied by `backoff` after each sleep (up
    to `max_pause`), never past the deadline; `ready()` is called once more at the
    deadline. `on_wait(remaining)` runs before each sleep, to say what is awaited.
    """
    clock = clock or SystemClock()
    deadline = clock.monotonic() + timeout
    while not ready():
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            return False
        if on_wait is not None:
            on_wait(remaining)
        clock.sleep(min(pause, remaining))
        pause *= backoff
        if max_pause is not None:
            pause = min(pause, max_pause)
    return True


def retry(
    call: Callable[[], T],
    delays: Iterable[float],
    transient: Callable[[Exception], bool],
    *,
    clock: Clock,
    on_retry: Callable[[Exception, float], None] | None = None,
) -> T:
    """Return `call()`; when it raises an exception `transient` accepts, sleep the next of
    `delays` and call again: the one retry policy of slapos. Once the delays run out, or
    for any other exception, the exception propagates. `on_retry(exc, delay)` says so
    before each sleep."""
    for delay in delays:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            clock.sleep(delay)
    return call()


@dataclass
class PidFile:
    """The lock of one kind of node run (software, instance, report).

    A pid file that names a live process whose command line contains "slapos" means
    another run is going on: AlreadyRunningError (exit 10). Anything else is stale and is
    replaced. The file is removed when the run ends.
    """

    path: Path
    _held: bool = field(default=False, init=False)

    def acquire(self) -> None:
        other = self._running_pid()
        if other is not None:
            raise AlreadyRunningError(
                f"another slapos process is already running (pid {other}, lock {self.path})"
            )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(f"{os.getpid()}\n")
            os.replace(tmp, self.path)
        except OSError as exc:  # /opt/slapos, say, for a user who is not root
            with contextlib.suppress(OSError):
                tmp.unlink()
            where = f": {exc.filename}" if exc.filename and exc.filename != str(tmp) else ""
            raise ConfigError(
                f"cannot write the lock file {self.path}: {exc.strerror or exc}{where} ([slapos] "
                "pidfile_software / pidfile_instance / pidfile_report, else --pidfile, "
                "chooses another)"
            ) from exc
        self._held = True

    def release(self) -> None:
        if self._held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._held = False

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.path.read_text().strip())
        except (OSError, ValueError):  # none, or unreadable: acquire() then says why
            return None
        if pid == os.getpid():
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"slapos" in cmdline else None

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def atomic_write(path: Path, mode: int = 0o644) -> Iterator[IO[str]]:
    """Write `path` through a temporary file renamed into place: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_file_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    with atomic_write(path, mode) as handle:
        handle.write(text)
