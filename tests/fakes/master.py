"""The masters: `FakeMaster`, an in-thread HTTP server playing a master (the `fake_master`
fixture), answers scripted by path or in order, every request recorded, for the slap
library and the client commands; and the node engines' masters, which stand for what the
engines are given instead of HTTP (`FakeSoftwareMaster`, `FakeComputer`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from slapos.grid.software import SoftwareMaster, SuppliedRelease
from slapos.slap.exception import ConnectionError as SlapConnectionError
from slapos.slap.exception import NotFoundError
from tests.fixtures.common import serve_http


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, str | bytes] | tuple[int, str | bytes, dict[str, str]]


@dataclass
class FakeMaster:
    routes: dict[str, Answer | Callable[[Recorded], Answer]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    delay: float = 0.0
    url: str = ""
    #: when set, answers are taken from it in order, whatever the path
    script: list[Answer] | None = None

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]


def _handler(master: FakeMaster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            record = Recorded(
                self.command,
                parts.path,
                parse_qs(parts.query, keep_blank_values=True),
                form if self.command == "POST" else {},
                dict(self.headers.items()),
                body,
            )
            master.requests.append(record)
            if master.delay:
                time.sleep(master.delay)
            scripted: Answer | Callable[[Recorded], Answer]
            if master.script is not None:
                scripted = master.script.pop(0) if master.script else (599, "script exhausted")
            else:
                scripted = master.routes.get(parts.path, (404, "<p>Not Found</p>"))
            answer = scripted(record) if callable(scripted) else scripted
            status, payload, *rest = answer
            headers = rest[0] if rest else {}
            data = payload.encode("utf-8") if isinstance(payload, str) else payload
            # A client that timed out on purpose (slow-master tests) has gone: not an error.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

    return Handler


@pytest.fixture
def fake_master() -> Iterator[FakeMaster]:
    master = FakeMaster()
    with serve_http(_handler(master)) as served:
        master.url = served.url
        yield master


# ---- the node's side of the master --------------------------------------------------------
# The node's engines do not speak HTTP to a fake: the software engine is given a
# `SoftwareMaster`, the instance and report engines the computer the slap library returns.


@dataclass
class FakeSoftwareMaster:
    """A `slapos.grid.software.SoftwareMaster` supplying `releases`; reports recorded in
    order as (what, url), error logs by url."""

    releases: list[SuppliedRelease] = field(default_factory=list)
    reports: list[tuple[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def software_releases(self) -> list[SuppliedRelease]:
        return list(self.releases)

    def building(self, url: str) -> None:
        self.reports.append(("building", url))

    def available(self, url: str) -> None:
        self.reports.append(("available", url))

    def destroyed(self, url: str) -> None:
        self.reports.append(("destroyed", url))

    def error(self, url: str, error_log: str) -> None:
        self.reports.append(("error", url))
        self.errors[url] = error_log


_check_software: SoftwareMaster = FakeSoftwareMaster()  # mypy: it stands for the protocol


@dataclass
class FakeRelease:
    url: str

    def getURI(self) -> str:
        return self.url


@dataclass
class FakePartition:
    """A computer partition as the slap library gives it; what the node tells the master
    about it is recorded in `calls` as (what, argument)."""

    id: str
    state: str = "started"
    url: str | None = "http://sr/software.cfg"
    parameters: dict[str, Any] = field(default_factory=dict)
    access_status: Any = None
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def getId(self) -> str:
        return self.id

    def getState(self) -> str:
        return self.state

    def getSoftwareRelease(self) -> FakeRelease:
        if self.url is None:
            raise NotFoundError("no software release")
        return FakeRelease(self.url)

    def getInstanceParameterDict(self) -> dict[str, Any]:
        return dict(self.parameters)

    def getAccessStatus(self) -> Any:
        return self.access_status

    def getCertificate(self) -> dict[str, str]:
        return {"certificate": "CERT", "key": "KEY"}

    def started(self) -> None:
        self.calls.append(("started", None))

    def stopped(self) -> None:
        self.calls.append(("stopped", None))

    def destroyed(self) -> None:
        self.calls.append(("destroyed", None))

    def error(self, message: str) -> None:
        self.calls.append(("error", message))

    def setComputerPartitionRelatedInstanceList(self, refs: list[str]) -> None:
        self.calls.append(("related", refs))

    def reported(self) -> list[str]:
        return [name for name, _ in self.calls]


@dataclass
class FakeComputer:
    """The computer as the slap library gives it; `down` makes the master unreachable."""

    partitions: list[FakePartition]
    down: bool = False

    def getComputerPartitionList(self) -> list[FakePartition]:
        if self.down:
            raise SlapConnectionError("master unreachable")
        return list(self.partitions)
