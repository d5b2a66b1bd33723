"""The masters of the tests.

* `FakeMaster`, an in-thread HTTP server playing a master (the `fake_master` fixture):
  answers scripted by path or in order, every request recorded; for the slap library and
  the client commands.
* `RecordingMaster`, an HTTP relay in front of a real master (our proxy or upstream's)
  that records every call and can fail them (the `recording_master` and `recorder`
  fixtures); for the node commands, whose reports the proxies do not all keep.
* The node engines' masters, which stand for what the engines are given instead of HTTP:
  `FakeSoftwareMaster` (a `SoftwareMaster`), `FakeComputer` (a `MasterComputer`) and
  its `FakePartition`s (`MasterPartition`s).
"""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from slapos.grid.master import MasterComputer
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


def _send(
    handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], data: bytes
) -> None:
    """Answer `status` with `headers` and `data` (its length added)."""
    handler.send_response(status)
    for key, value in headers:
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _Handler(BaseHTTPRequestHandler):
    """Logs nothing; reads the request's body."""

    def log_message(self, *args: Any) -> None:
        pass

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


def _handler(master: FakeMaster) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes

        def _serve(self) -> None:
            body = self.body()
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
                content_type = ("Content-Type", "text/html; charset=utf-8")
                _send(self, status, [*headers.items(), content_type], data)

        do_GET = _serve
        do_POST = _serve

    return Handler


@pytest.fixture
def fake_master() -> Iterator[FakeMaster]:
    master = FakeMaster()
    with serve_http(_handler(master)) as served:
        master.url = served.url
        yield master


# ---- a relay in front of a real master ---------------------------------------------------

#: headers of one connection, not of the request: neither relayed nor answered back
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class RecordingMaster:
    """Relays every request to the master at `target` and records it in `calls` as
    (method, path without its leading "/", query and form fields). `down = True` answers
    503 to every call, as a master in maintenance does; `refuse_writes = True` answers 403
    to every POST (the slap protocol's writes), as a read-only master would.

    `url` and `computer_id` are what the node fixtures need of a master: give them this.
    """

    target: str
    computer_id: str
    url: str = ""
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    down: bool = False
    refuse_writes: bool = False

    def posted(self, name: str) -> list[dict[str, str]]:
        """The fields of every POST to the call `name` (the path's last part), in order."""
        return [
            fields
            for method, path, fields in self.calls
            if method == "POST" and path.rsplit("/", 1)[-1] == name
        ]


def _relay(master: RecordingMaster) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(master.target)

    class Relay(_Handler):
        def _relay(self) -> None:
            body = self.body()
            parts = urlsplit(self.path)
            fields = dict(parse_qsl(parts.query, keep_blank_values=True))
            fields.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            master.calls.append((self.command, parts.path.lstrip("/"), fields))
            if master.down or (master.refuse_writes and self.command == "POST"):
                _send(self, 503 if master.down else 403, [], b"")
                return
            conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                path = target.path.rstrip("/") + self.path
                conn.request(self.command, path, body or None, headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
            _send(self, answer.status, kept, data)

        do_GET = _relay
        do_POST = _relay

    return Relay


@contextlib.contextmanager
def recording(master: Any) -> Iterator[RecordingMaster]:
    """A RecordingMaster in front of `master` (anything with .url and .computer_id)."""
    relay = RecordingMaster(master.url, master.computer_id)
    with serve_http(_relay(relay)) as served:
        relay.url = served.url
        yield relay


@pytest.fixture
def recording_master() -> Iterator[Callable[[Any], RecordingMaster]]:
    """recording_master(master) -> a RecordingMaster in front of `master`, for this test."""
    with contextlib.ExitStack() as stack:
        yield lambda master: stack.enter_context(recording(master))


@pytest.fixture
def recorder(master: Any) -> Iterator[RecordingMaster]:
    """A RecordingMaster in front of the `master` fixture."""
    with recording(master) as relay:
        yield relay


# ---- the node's side of the master --------------------------------------------------------
# The node's engines do not speak HTTP to a fake: the software engine is given a
# `SoftwareMaster`, the instance and report engines a `MasterComputer` (slapos.grid.master).


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


_check_software: SoftwareMaster = (
    FakeSoftwareMaster()
)  # checked by mypy: it stands for the protocol


@dataclass
class FakeRelease:
    url: str

    def getURI(self) -> str:
        return self.url


@dataclass
class FakePartition:
    """A `slapos.grid.master.MasterPartition`. What the node tells the master about it is
    recorded: the calls in order in `reports` ("started", "error", "related"...), and their
    arguments in `errors`, `bangs` and `related`."""

    id: str
    state: str = "started"
    url: str | None = "http://sr/software.cfg"
    parameters: dict[str, object] = field(default_factory=dict)
    #: what getAccessStatus answers ("#error ..." after a reported error; None: not said)
    access_status: str | None = None
    reports: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bangs: list[str] = field(default_factory=list)
    related: list[list[str]] = field(default_factory=list)

    def getId(self) -> str:
        return self.id

    def getState(self) -> str:
        return self.state

    def getSoftwareRelease(self) -> FakeRelease:
        if self.url is None:
            raise NotFoundError("no software release")
        return FakeRelease(self.url)

    def getInstanceParameterDict(self) -> dict[str, object]:
        return dict(self.parameters)

    def getAccessStatus(self) -> str | None:
        return self.access_status

    def getCertificate(self) -> dict[str, str]:
        return {"certificate": "CERT", "key": "KEY"}

    def started(self) -> None:
        self.reports.append("started")

    def stopped(self) -> None:
        self.reports.append("stopped")

    def destroyed(self) -> None:
        self.reports.append("destroyed")

    def error(self, error_log: str) -> None:
        self.reports.append("error")
        self.errors.append(error_log)

    def bang(self, message: str) -> None:
        self.reports.append("bang")
        self.bangs.append(message)

    def setComputerPartitionRelatedInstanceList(
        self, instance_reference_list: Sequence[str]
    ) -> None:
        self.reports.append("related")
        self.related.append(list(instance_reference_list))


@dataclass
class FakeComputer:
    """A `slapos.grid.master.MasterComputer` listing `partitions`; `down` makes the master
    unreachable, `refuse_usage` makes it fail usage reports; the reports it took are in
    `usage`."""

    partitions: list[FakePartition]
    down: bool = False
    refuse_usage: bool = False
    usage: list[str] = field(default_factory=list)

    def getComputerPartitionList(self) -> list[FakePartition]:
        if self.down:
            raise SlapConnectionError("master unreachable")
        return list(self.partitions)

    def reportUsage(self, computer_usage: str) -> None:
        if self.refuse_usage:
            raise SlapConnectionError("master down")
        self.usage.append(computer_usage)


# Checked by mypy: the fakes stand for the protocol.
_check_computer: MasterComputer = FakeComputer([FakePartition("slappart0")])
