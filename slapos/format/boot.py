"""`slapos node boot`: bring a node back after the machine started.

Wait (bounded) until the IPv6 interface has a global address, format until it works (when
only the master is missing, wait until its port answers), bang, and remove every
partition's .timestamp so the next `node instance` reprocesses everything. Upstream retries
forever; here every wait has a deadline, so a broken node ends with an error (exit 1)
instead of a boot script hanging.

The CLI passes `run_format` and `run_bang` in.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slapos.errors import ExitCode, SlapOSError
from slapos.system import Clock, Runner, wait_until

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootSettings:
    instance_root: Path
    partition_base_name: str
    master_host: str | None
    master_port: int
    ipv6_interface: str | None
    message: str = "Reboot"
    #: how long each stage may take, seconds
    ipv6_timeout: float = 600.0
    format_timeout: float = 1800.0
    bang_timeout: float = 1800.0
    ipv6_pause: float = 5.0
    retry_pause: float = 15.0


class BootError(SlapOSError):
    """The node could not be brought back within the deadlines."""


def has_global_ipv6(runner: Runner, interface: str) -> bool:
    from slapos.format.netif import read_network

    try:
        state = read_network(runner)
    except SlapOSError as exc:
        log.debug("cannot read the network: %s", exc)
        return False
    link = state.links.get(interface)
    return bool(link and link.global_ipv6())


def reachable(host: str, port: int) -> bool:
    """Whether the master accepts TCP connections (upstream pinged it; ICMP may be filtered
    or ping missing, and the master's HTTP port is what matters)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


def remove_timestamps(instance_root: Path, base_name: str) -> list[Path]:
    removed = []
    for stamp in sorted(instance_root.glob(f"{base_name}*/.timestamp")):
        log.info("removing %s", stamp)
        stamp.unlink(missing_ok=True)
        removed.append(stamp)
    return removed


def boot(
    settings: BootSettings,
    *,
    runner: Runner,
    clock: Clock,
    run_format: Callable[[], int],
    run_bang: Callable[[str], int],
) -> None:
    """The whole boot sequence; raise BootError when a deadline passes."""
    if settings.ipv6_interface:
        _wait(
            clock,
            settings.ipv6_timeout,
            settings.ipv6_pause,
            lambda: has_global_ipv6(runner, settings.ipv6_interface or ""),
            f"no global IPv6 address on {settings.ipv6_interface}",
        )
    deadline = clock.monotonic() + settings.format_timeout

    def format_once() -> int:
        result = run_format()
        if result == ExitCode.FORMAT_OFFLINE_SUCCESS and settings.master_host:
            log.error("[BOOT] could not post to the master, waiting until it is reachable")
            host, port = settings.master_host, settings.master_port
            _wait(
                clock,
                max(deadline - clock.monotonic(), 0.0),
                settings.ipv6_pause,
                functools.partial(reachable, host, port),
                f"master {host}:{port} does not answer",
            )
        return result

    _retry(clock, settings.format_timeout, settings.retry_pause, "node format", format_once)
    _retry(
        clock,
        settings.bang_timeout,
        settings.retry_pause,
        "node bang",
        lambda: run_bang(settings.message),
    )
    remove_timestamps(settings.instance_root, settings.partition_base_name)


def _wait(
    clock: Clock, timeout: float, pause: float, ready: Callable[[], bool], failure: str
) -> None:
    def waiting(remaining: float) -> None:
        log.warning("[BOOT] %s yet, checking again in %.0fs", failure, min(pause, remaining))

    if not wait_until(ready, timeout, clock=clock, pause=pause, on_wait=waiting):
        raise BootError(f"{failure} after {timeout:.0f}s")


def _retry(
    clock: Clock, timeout: float, pause: float, what: str, attempt: Callable[[], int]
) -> None:
    """Run `attempt` until it exits 0, `pause` seconds apart; BootError after `timeout`."""
    results: list[int] = []

    def done() -> bool:
        log.info("[BOOT] invoking slapos %s", what)
        results.append(attempt())
        return results[-1] == ExitCode.OK

    def failed(remaining: float) -> None:
        log.error("[BOOT] %s failed, trying again in %.0fs", what, min(pause, remaining))

    if not wait_until(done, timeout, clock=clock, pause=pause, on_wait=failed):
        raise BootError(f"{what} still fails after {timeout:.0f}s (last exit {results[-1]})")
