"""zc.buildout invocations of the node: bootstrap and run, for software and instance alike.

The argv and the environment are computed as data (`bootstrap_command`, `buildout_command`,
`clean_environment`); `execute` runs one through a `slapos.system.Runner`:

* as the owner of the working directory, never as root (the Runner refuses uid/gid 0 when
  we are root, and switches nothing when we are not);
* with umask 027 and a clean environment (node.md §4.5);
* stdin closed, stdout+stderr merged, each line appended to a log file and fed to a
  callback (progress display), the whole output kept for the error report;
* killed with its whole process group after `timeout` seconds.

A failed run raises `BuildoutFailed`, whose message is one line (the reason buildout gave
and where the full log is) and which carries the output for the master's error report.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pwd
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from slapos.errors import BuildoutError
from slapos.grid.utils import failure_reason
from slapos.system import Completed, Credentials, Runner

log = logging.getLogger(__name__)

#: umask of every buildout run: files are not world-readable by default.
SAFE_UMASK = 0o027

#: Variables that would make the build depend on who started the node, or break Python.
DROPPED_VARIABLES = frozenset(
    {
        "PYTHONHOME",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONY2K",
        "PYTHONOPTIMIZE",
        "PYTHONDEBUG",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONINSPECT",
        "PYTHONUNBUFFERED",
        "PYTHONVERBOSE",
        "CONFIG_SITE",
        "ENV",
        "LOGNAME",
        "TEMP",
        "TMP",
        "TMPDIR",
        "LANG",
        "LANGUAGE",
    }
)

#: Name of the marker that says "this run skipped the bootstrap" (upstream's name).
BOOTSTRAP_SKIPPED = "buildout-bootstrap-skipped"


def clean_environment(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The environment of a buildout child: `environ` minus locale/Python/temp variables."""
    env = {
        key: value
        for key, value in environ.items()
        if key not in DROPPED_VARIABLES and not key.startswith("LC_")
    }
    env["PYTHONNOUSERSITE"] = "true"
    env["HOME"] = str(home)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def home_of_owner(directory: Path) -> Path:
    """Home directory of the owner of `directory` (the directory itself when unknown)."""
    try:
        return Path(pwd.getpwuid(directory.stat().st_uid).pw_dir)
    except KeyError:
        return directory


@dataclass(frozen=True)
class Command:
    """One planned buildout (or bootstrap) process."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(repr=False)
    #: None: run as ourselves (we are not root, nothing to switch).
    user: Credentials | None = None
    umask: int = SAFE_UMASK
    #: False in debug mode: buildout talks to our terminal (pdb), nothing is captured.
    capture: bool = True


def bootstrap_command(
    directory: Path,
    *,
    argv_extra: Sequence[str] = (),
    environ: Mapping[str, str],
    python: str = sys.executable,
    sys_path: Sequence[str] | None = None,
    buildout_script: str | None = None,
) -> Command:
    """`bin/buildout` for `directory`, made by the zc.buildout our own Python imports.

    With `buildout_script` ([slapos] buildout), that script is run with our Python instead.
    """
    argv: list[str] = [python, "-S"]
    if buildout_script:
        argv += [buildout_script, *argv_extra, "bootstrap"]
    else:
        # relative entries ('' and '.') would import from the working directory
        path = [p for p in (sys.path if sys_path is None else sys_path) if p.startswith("/")]
        program = (
            f"import sys; sys.path[:] = {path!r}; import zc.buildout.buildout; "
            f"sys.argv[1:] = {[*argv_extra, 'bootstrap']!r}; "
            "sys.exit(zc.buildout.buildout.main())"
        )
        argv += ["-c", program]
    return Command(
        tuple(argv),
        directory,
        clean_environment(environ, home_of_owner(directory)),
        Credentials.owner_of(directory),
    )


def buildout_command(
    directory: Path,
    *,
    argv_extra: Sequence[str] = (),
    environ: Mapping[str, str],
    debug: bool = False,
    buildout_binary: Path | None = None,
    launcher: Path | None = None,
) -> Command:
    """`bin/buildout -U ARGS` in `directory` (HOME is the directory, as upstream).

    The interpreter named by the script's shebang is called explicitly, which avoids the
    kernel's limit on shebang length for deep software roots. With `launcher`, that
    interpreter runs the launcher script, which runs bin/buildout (see offline_eggs.py).
    """
    script = buildout_binary or directory / "bin" / "buildout"
    argv: list[str] = []
    with contextlib.suppress(OSError, UnicodeDecodeError), script.open(encoding="utf-8") as f:
        first = f.readline()
        if first.startswith("#!"):
            argv = first[2:].split()
    if launcher is not None:
        argv.append(str(launcher))
    argv.append(str(script))
    if debug:
        argv.append("-D")
    argv += ["-U", *argv_extra]
    return Command(
        tuple(argv),
        directory,
        clean_environment(environ, directory),
        Credentials.owner_of(directory),
        capture=not debug,
    )


class BuildoutFailed(BuildoutError):
    """A buildout run exited non-zero, timed out or was killed."""

    def __init__(
        self,
        directory: Path,
        completed: Completed,
        log_path: Path | None = None,
        timeout: float | None = None,
    ) -> None:
        if completed.timed_out:
            reason = f"buildout timed out after {timeout:g} s" if timeout else "timed out"
        else:
            reason = failure_reason(completed.output, completed.returncode)
        where = f" (full log: {log_path})" if log_path is not None else ""
        super().__init__(f"buildout failed in {directory}: {reason}{where}")
        self.directory = directory
        self.completed = completed
        self.reason = reason
        self.log_path = log_path

    @property
    def output(self) -> str:
        return self.completed.output

    def report(self, lines: int = 100) -> str:
        """The text sent to the master: upstream's header plus the tail of the output."""
        return (
            f"Failed to run buildout profile in directory {str(self.directory)!r}:\n"
            f"{self.completed.tail(lines)}\n"
        )


@contextlib.contextmanager
def _log_file(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a", encoding="utf-8", errors="replace")
    try:
        yield handle
    finally:
        with contextlib.suppress(OSError):  # a full disk must not hide the build's result
            handle.close()


def execute(
    command: Command,
    *,
    runner: Runner,
    log_path: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> Completed:
    """Run `command`; each output line goes to `log_path` (appended) and `on_line`.

    Raises BuildoutFailed (one-line message) when the process fails or times out.
    """
    log.debug("invoking %s in %s", " ".join(command.argv), command.cwd)
    with _log_file(log_path) as out:
        if out is not None:
            out.write(f"$ {' '.join(command.argv)}\n")
            out.flush()

        broken: list[OSError] = []

        def line(text: str) -> None:
            if out is not None and not broken:
                try:
                    out.write(text + "\n")
                    out.flush()
                except OSError as exc:  # full disk: the build goes on, its log stops here
                    broken.append(exc)
                    log.warning("cannot write %s: %s", log_path, exc.strerror or exc)
            log.debug("%s", text)
            if on_line is not None:
                on_line(text)

        completed = runner.run(
            command.argv,
            cwd=command.cwd,
            env=command.env,
            user=command.user,
            umask=command.umask,
            timeout=timeout,
            on_line=line,
            capture=command.capture,
        )
        if out is not None and not completed.ok and not broken:
            status = "timed out" if completed.timed_out else f"exit status {completed.returncode}"
            with contextlib.suppress(OSError):
                out.write(f"[slapos] {status}\n")
                out.flush()
    if not completed.ok:
        raise BuildoutFailed(command.cwd, completed, log_path, timeout)
    return completed


def bootstrap_and_run(  # noqa: PLR0913 - keyword-only knobs of one process
    directory: Path,
    *,
    runner: Runner,
    environ: Mapping[str, str],
    argv_extra: Sequence[str] = (),
    log_path: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    debug: bool = False,
    python: str = sys.executable,
    buildout_script: str | None = None,
) -> Completed:
    """Bootstrap when needed, then run buildout: upstream's marker dance (node.md §4.5).

    If `bin/buildout` exists, the bootstrap is skipped and a marker
    `bin/buildout-bootstrap-skipped` is left while buildout runs; a marker found at start
    means the previous bootstrap-less run failed, so this one bootstraps again.
    """
    binary = directory / "bin" / "buildout"
    marker = directory / "bin" / BOOTSTRAP_SKIPPED
    skip = False
    if marker.exists():
        marker.unlink()
    elif binary.exists():
        marker.touch()
        skip = True
    run = functools.partial(
        execute, runner=runner, log_path=log_path, on_line=on_line, timeout=timeout
    )
    if not skip:
        run(
            bootstrap_command(
                directory,
                argv_extra=argv_extra,
                environ=environ,
                python=python,
                buildout_script=buildout_script,
            )
        )
    completed = run(
        buildout_command(directory, argv_extra=argv_extra, environ=environ, debug=debug)
    )
    if skip:
        marker.unlink(missing_ok=True)
    return completed
