"""`FakeMaster`: an in-thread HTTP server playing a master (the `fake_master` fixture):
answers scripted by path or in order, every request recorded. For the slap library and the
client commands; the grid tests' masters stand for the node's master protocols instead."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

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
