"""`FakeRunner`: a `slapos.system.Runner` that runs nothing, records every call and answers
from a script; a command it was not scripted for is refused (`UnscriptedCommand`), so a
test never runs a real program by accident."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from slapos.system import Completed, Credentials, Runner


class UnscriptedCommand(AssertionError):
    """The code under test ran a command the test did not script."""


@dataclass(frozen=True)
class Call:
    """One `run()` as the code under test made it."""

    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    user: Credentials | None = None
    umask: int | None = None
    timeout: float | None = None


#: What a command gives back: (returncode, output), or a whole `Completed` for what a pair
#: cannot say (a timeout).
Reply = tuple[int, str] | Completed

#: What a scripted command answers: a Reply, or a function of the `Call` that returns one
#: (for answers that change from call to call, or that act on `call.cwd` as the program
#: would, e.g. `tests.fakes.buildout.fake_buildout`).
Answer = Reply | Callable[[Call], Reply]


class FakeRunner:
    """Answers each argv from `script`, keyed by argv prefixes (the longest match wins);
    `default` answers any other argv; without it, other argvs raise UnscriptedCommand.

        runner = FakeRunner({("gcc", "-dumpmachine"): (0, "x86_64-linux-gnu\\n")})
        FakeRunner(default=(127, "sensors: not found"))  # every command is missing
        FakeRunner(default=fake_buildout)  # a function of each Call answers everything

    The output is given to `on_line` line by line, as SubprocessRunner streams it.
    """

    def __init__(
        self,
        script: Mapping[tuple[str, ...], Answer] | None = None,
        *,
        default: Answer | None = None,
    ) -> None:
        self.script = dict(script or {})
        self.default = default
        self.calls: list[Call] = []

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        """The argv of every call, in order."""
        return [call.argv for call in self.calls]

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
        command = tuple(str(part) for part in argv)
        call = Call(command, cwd, env, user, umask, timeout)
        self.calls.append(call)
        answer = self._answer(command)
        reply = answer(call) if callable(answer) else answer
        done = reply if isinstance(reply, Completed) else Completed(command, *reply)
        if on_line is not None:
            for line in done.output.splitlines():
                on_line(line)
        return done if capture else replace(done, output="")

    def _answer(self, command: tuple[str, ...]) -> Answer:
        for length in range(len(command), 0, -1):
            answer = self.script.get(command[:length])
            if answer is not None:
                return answer
        if self.default is not None:
            return self.default
        raise UnscriptedCommand(
            f"FakeRunner was not scripted for {list(command)} "
            f"(scripted: {sorted(self.script) or 'nothing'})"
        )


_check: Runner = FakeRunner()  # mypy: the fake stands for the protocol
