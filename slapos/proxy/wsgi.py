"""The thin WSGI layer between the HTTP server (gunicorn or granian) and the application.

What the server does not do for us, and nothing more (no parsing: the server frames and
validates requests):

* request bodies: refused with 413 past `max_body_size` (`max_cache_body_size` for
  uploads to the built-in shacache), before anything is read when Content-Length says so;
  bodies of SLAP calls are read here in pieces and spooled to a temporary file past
  `body_spool_size`, so that slow or large bodies cost disk, not memory, until they are
  complete; the application then sees a `wsgi.input` of known `CONTENT_LENGTH`, chunked
  requests included. A body that ends early (gunicorn then gives what came) is refused
  with 400: the application never sees half a call. Shacache uploads are streamed to the
  cache application as they come, counted against their limit;
* the client certificate: with TLS, the common name of the certificate the client
  presented is put in the environ under `PEER_KEY` (read once per connection).
"""

from __future__ import annotations

import contextlib
import io
import logging
import ssl
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger(__name__)
#: one line per request (INFO), whichever server answered it
access_log = logging.getLogger("slapos.proxy.access")

#: environ key: the common name of the client certificate (TLS with tls_ca only)
PEER_KEY = "slapos.peer_common_name"
_PEER_ATTRIBUTE = "_slapos_peer_common_name"
_PIECE = 64 * 1024

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class BodyLimits:
    max_body: int
    #: for `/shacache/...` when the proxy serves a shacache (else equal to max_body)
    max_cache_body: int
    spool: int


class BodyTooLarge(Exception):
    """Raised by the counting stream given to the shacache application."""


class _Counted(io.RawIOBase):
    """A request body read as it arrives, refused past `limit` bytes (chunked uploads)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._seen = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read(size if size is not None and size >= 0 else _PIECE)
        self._seen += len(data)
        if self._seen > self._limit:
            raise BodyTooLarge(f"request body larger than {self._limit} bytes")
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def peer_common_name(sock: Any) -> str | None:
    """The common name of the certificate the TLS peer presented (None without one)."""
    try:
        return getattr(sock, _PEER_ATTRIBUTE)  # type: ignore[no-any-return]
    except AttributeError:
        pass
    name = None
    try:
        certificate = sock.getpeercert()
    except (OSError, ValueError):  # not connected any more, or no handshake
        certificate = None
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = str(value)
    with contextlib.suppress(AttributeError):  # no __dict__: look again next time
        setattr(sock, _PEER_ATTRIBUTE, name)
    return name


class ServerLayer:
    """Wrap `app` (see the module docstring)."""

    def __init__(self, app: WSGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, ssl.SSLSocket):
            environ[PEER_KEY] = peer_common_name(sock)
        length_text = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not length_text and not chunked:
            return self.app(environ, start_response)
        cache = environ.get("PATH_INFO", "").startswith("/shacache/")
        limit = self.limits.max_cache_body if cache else self.limits.max_body
        length = int(length_text) if length_text.isdigit() else None
        if length is not None and length > limit:
            return _too_large(start_response, limit)
        if cache:  # the cache application streams the upload to disk itself
            if length is None:
                environ["wsgi.input"] = _Counted(environ["wsgi.input"], limit)
            try:
                return self.app(environ, start_response)
            except BodyTooLarge:
                return _too_large(start_response, limit)
        try:
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = _spool(
                environ["wsgi.input"], length, limit, self.limits.spool
            )
        except BodyTooLarge:
            return _too_large(start_response, limit)
        except _Incomplete as exc:
            return _refuse(start_response, "400 Bad Request", str(exc))
        return self.app(environ, start_response)


class _Incomplete(Exception):
    """The client stopped sending before the end of the body its Content-Length gave."""


def _spool(stream: IO[bytes], length: int | None, limit: int, spool: int) -> tuple[IO[bytes], str]:
    """The whole body, in memory up to `spool` bytes and in a temporary file past that,
    with its length. BodyTooLarge past `limit`; _Incomplete if it ends early."""
    if length is not None and length <= spool:
        data = stream.read(length)
        if len(data) < length:
            raise _Incomplete(f"request body incomplete: {len(data)} of {length} bytes")
        return io.BytesIO(data), str(length)
    body: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=spool, prefix="slapos-proxy-body-")  # noqa: SIM115 - unlinked at once; freed with the environ
    size = 0
    while length is None or size < length:
        piece = stream.read(_PIECE if length is None else min(_PIECE, length - size))
        if not piece:
            break
        size += len(piece)
        if size > limit:
            body.close()
            raise BodyTooLarge(f"request body larger than {limit} bytes")
        body.write(piece)
    if length is not None and size < length:
        body.close()
        raise _Incomplete(f"request body incomplete: {size} of {length} bytes")
    body.seek(0)
    return body, str(size)


def _too_large(start_response: StartResponse, limit: int) -> list[bytes]:
    return _refuse(
        start_response, "413 Payload Too Large", f"request body larger than {limit} bytes"
    )


def _refuse(start_response: StartResponse, status: str, reason: str) -> list[bytes]:
    """Answer `status` with a one-line reason; the connection then closes (the rest of
    the body, if any, is not read: it cannot carry another request)."""
    text = f"{reason}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text)))]
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if force_close is None:  # granian: hyper closes after an answer that says so
        headers.append(("Connection", "close"))
    start_response(status, headers)
    if force_close is not None:
        force_close()
    return [text]


@dataclass(frozen=True)
class HeadLimits:
    """The request head limits gunicorn applies while parsing ([slapproxy] keys)."""

    max_request_line: int
    max_header_fields: int
    max_header_field_size: int


#: what a request head puts in the environ besides HTTP_* (CGI names)
_HEAD_KEYS = ("CONTENT_TYPE", "CONTENT_LENGTH")


class HeadGuard:
    """For granian (hyper): refuse, as gunicorn does, what its parser lets through and
    the environ still shows; and keep the process's environment out of requests.

    * two `Host` headers (hyper joins repeated fields with commas, and a host never has
      one): 400;
    * a request line longer than `max_request_line` (the path as decoded): 414;
    * more header fields than `max_header_fields`, or one longer than
      `max_header_field_size` (`Name: value`; repeated fields count once, joined): 431;
    * a chunked body outside the shacache: 411 (Content-Length required). granian's
      `wsgi.input` ends the same way whether the body ended or broke off (the client went
      away, a malformed chunk), and the application must never see half a call: with a
      Content-Length, a short body is seen (and refused with 400); without, it is not.
      Shacache uploads are content-addressed: a cut one is stored under its own digest;
    * granian starts every environ from the server's `os.environ`: a variable named like a
      request header (`HTTP_PROXY`...) or `CONTENT_TYPE`/`CONTENT_LENGTH` would look like
      one sent by the client. Such keys are removed when they hold the environment's
      value (a client sending that very value in that header loses it: never one the
      proxy reads).

    Each refusal closes the connection (`Connection: close`).
    """

    def __init__(self, app: WSGIApp, limits: HeadLimits, environment: dict[str, str]) -> None:
        self.app = app
        self.limits = limits
        self.inherited = {
            key: value
            for key, value in environment.items()
            if key.startswith("HTTP_") or key in _HEAD_KEYS
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        for key, value in self.inherited.items():
            if environ.get(key) == value:
                del environ[key]
        refusal = self.refusal(environ)
        if refusal is not None:
            return _refuse(start_response, *refusal)
        return self.app(environ, start_response)

    def refusal(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """(status, reason) for a head gunicorn would refuse, else None."""
        limits = self.limits
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get(
            "PATH_INFO", ""
        ).startswith("/shacache/"):
            return "411 Length Required", "a request body needs a Content-Length here"
        if "," in environ.get("HTTP_HOST", ""):
            return "400 Bad Request", "more than one Host header"
        line = (
            len(environ.get("REQUEST_METHOD", ""))
            + len(environ.get("PATH_INFO", ""))
            + len(environ.get("QUERY_STRING", ""))
            + len(environ.get("SERVER_PROTOCOL", ""))
            + 3
        )
        if line > limits.max_request_line:
            return "414 URI Too Long", f"request line longer than {limits.max_request_line} bytes"
        # `Name: value` lines: HTTP_ is not part of the name, ": " is part of the line
        sizes = {
            key: len(key) + len(value) - 3 for key, value in environ.items() if key[:5] == "HTTP_"
        }
        for key in _HEAD_KEYS:
            if key in environ:
                sizes[key] = len(key) + len(environ[key]) + 2
        if sizes and max(sizes.values()) > limits.max_header_field_size:
            key = max(sizes, key=sizes.__getitem__)
            name = key.removeprefix("HTTP_").replace("_", "-").title()
            return (
                "431 Request Header Fields Too Large",
                f"header field {name} longer than {limits.max_header_field_size} bytes",
            )
        if len(sizes) > limits.max_header_fields:
            return (
                "431 Request Header Fields Too Large",
                f"more than {limits.max_header_fields} header fields",
            )
        return None


def log_access(
    address: str, method: str, path: str, query: str, status: str, sent: int, seconds: float
) -> None:
    """The access-log line of one request (callers check `access_log.isEnabledFor` first)."""
    access_log.info(
        '%s "%s %s%s" %s %d %.1fms',
        address,
        method,
        path,
        f"?{query}" if query else "",
        status,
        sent,
        seconds * 1000,
    )
