"""HTTP calls to a SlapOS master, as the slap library makes them.

Keep-alive connections (`slapos.slap.transport`, on the standard library's `http.client`:
`requests` costs more per call than a local master's own work, and much to import), the
client certificate on https, the master's certificate verified (against `master_ca_file`
when one is given, the system's trust store otherwise; `master_tls_verify=False` turns
that off, with a warning), answers bounded in size, a timeout on every call, bounded
retries with backoff on connection errors for GETs only (they are idempotent; a POST may
have been applied), and HTTP statuses mapped to the slap exceptions (protocol.md §2.4)
with one-line messages naming master, call and status.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from slapos.slap import transport, wire
from slapos.slap.exception import (
    AuthenticationError,
    ConnectionError,
    HTTPError,
    NotFoundError,
    ResourceNotReady,
    ServerError,
)
from slapos.slap.transport import urlencode
from slapos.version import __version__

if TYPE_CHECKING:
    from slapos.system import Clock

log = logging.getLogger(__name__)

USER_AGENT = f"slapos/{__version__}"
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.5
#: Statuses upstream turns into ServerError (protocol.md §2.4).
SERVER_ERROR_STATUSES = frozenset((500, 502, 503, 520, 523, 524, 526))

Params = Mapping[str, Any]


def normalise_master_url(url: str) -> str:
    """Add brackets around a bare IPv6 host and a trailing slash (protocol.md §2.1)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if netloc and not netloc.startswith("["):
        netloc = _bracket_ipv6(netloc)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def _bracket_ipv6(netloc: str) -> str:
    if netloc.count(":") < 2:  # host or host:port
        return netloc
    import ipaddress  # here: ~2.5 ms to import, and most master URLs never get this far

    try:
        ipaddress.IPv6Address(netloc)
        return f"[{netloc}]"
    except ValueError:
        host, _, port = netloc.rpartition(":")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return netloc
        return f"[{host}]:{port}"


_TAG = re.compile(r"<[^>]+>")
_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.S | re.I)


def body_summary(text: str, limit: int = 200) -> str:
    """The useful part of an error body, on one line: a JSON error's message, HTML
    paragraphs or the raw text."""
    if text.lstrip().startswith("{"):
        import json

        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict):
            for key in ("message", "title", "detail"):  # HATEOAS, JSON-RPC, RFC 9457
                value = document.get(key)
                if isinstance(value, str) and value.strip():
                    text = value
                    break
    paragraphs = _PARAGRAPH.findall(text)
    if paragraphs:
        text = " ".join(paragraphs)
    text = " ".join(_TAG.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MasterSession:
    """Talks HTTP to one master: `get`/`post` return the body bytes or raise slap errors."""

    def __init__(
        self,
        master_url: str,
        *,
        tls: transport.TLSSettings | None = None,
        max_answer_size: int = transport.DEFAULT_MAX_ANSWER,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        clock: Clock | None = None,
    ) -> None:
        self.master_url = normalise_master_url(master_url)
        tls = tls or transport.TLSSettings()
        if not self.master_url.startswith("https"):  # no certificate to present
            tls = transport.TLSSettings(ca_file=tls.ca_file, verify=tls.verify)
        self.tls = tls
        # upstream's ConnectionHelper attributes
        self.key_file = tls.key_file
        self.cert_file = tls.cert_file
        self.master_ca_file = tls.ca_file
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        if clock is None:
            from slapos.system import SystemClock

            clock = SystemClock()
        self.clock = clock
        #: Proxies for the master, from the environment, read once (the URL never changes).
        self.proxies = transport.environ_proxies(self.master_url, os.environ)
        self.headers = {"Accept": "*/*", "User-Agent": USER_AGENT}
        self.http = transport.HttpClient(
            timeout=timeout,
            tls=tls,
            proxies=self.proxies,
            max_answer=max_answer_size,
        )
        if not tls.verify and self.master_url.startswith("https"):
            log.warning(
                "master_tls_verify is off: the certificate of master %s is not checked, "
                "anyone on the network path can pose as it",
                self.master_url,
            )
        self._requests_session: Any = None
        self._urls: dict[str, str] = {}

    @property
    def session(self) -> Any:
        """A `requests.Session` set up like this connection, made on first use.

        Upstream's ConnectionHelper exposes one; our own calls never use it.
        """
        if self._requests_session is None:
            import requests

            session = requests.Session()
            session.trust_env = False
            session.proxies.update(self.proxies)
            session.headers.update(self.headers)
            session.verify = (self.tls.ca_file or True) if self.tls.verify else False
            if self.cert_file:
                session.cert = (self.cert_file, self.key_file) if self.key_file else self.cert_file
            self._requests_session = session
        return self._requests_session

    # -- public API ------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        url = self._urls.get(path)
        if url is None:
            url = urljoin(self.master_url, path.lstrip("/"))
            if len(self._urls) < 256:  # the legacy API has a few dozen calls
                self._urls[path] = url
        return url

    def get(self, path: str, params: Params | None = None, **kw: Any) -> bytes:
        """GET a legacy API method; retried on connection errors."""
        return self.request("GET", self.url_for(path), params=params, call=path, **kw).content

    def post(
        self,
        path: str,
        data: Params | None = None,
        *,
        partition: tuple[str | None, str | None] | None = None,
        **kw: Any,
    ) -> bytes:
        """POST a form to a legacy API method; `partition` adds the X-SlapPartition header."""
        headers = dict(kw.pop("headers", None) or {})
        if partition is not None:
            headers["Authorization"] = wire.partition_authorization(*partition)
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        # None travels as the string "None" (its str()), as upstream's library sends it.
        body = urlencode(data or {}).encode("ascii")
        response = self.request(
            "POST", self.url_for(path), data=body, headers=headers, call=path, **kw
        )
        return response.content

    def get_document(self, path: str, params: Params | None = None) -> Any:
        """GET and unmarshal; a body that is not a document is a ServerError."""
        return self.decode(path, self.get(path, params))

    def post_document(self, path: str, data: Params | None = None, **kw: Any) -> Any:
        return self.decode(path, self.post(path, data, **kw))

    def decode(self, call: str, body: bytes) -> Any:
        try:
            return wire.loads(body)
        except wire.WireError as exc:
            raise ServerError(
                f"master {self.master_url} answered {call} with a malformed document: {exc}"
            ) from exc

    # Upstream's ConnectionHelper spelling, for code that reaches into `_connection_helper`.
    def GET(self, path: str, params: Params | None = None, **_: Any) -> bytes:
        return self.get(path, params)

    def POST(self, path: str, data: Params | None = None, **_: Any) -> bytes:
        return self.post(path, data)

    def close(self) -> None:
        self.http.close()
        if self._requests_session is not None:
            self._requests_session.close()

    # -- transport -------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        call: str | None = None,
        params: Params | None = None,
        data: Params | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        allow_redirects: bool = True,
        retry: bool | None = None,
    ) -> transport.Response:
        """One HTTP call with timeout, TLS settings, retries and status mapping."""
        call = call or url
        attempts = 1 + (self.retries if (method == "GET" if retry is None else retry) else 0)
        url = _with_params(url, params)
        sent = {**self.headers, **(headers or {})}
        body = data if isinstance(data, bytes) else None
        if isinstance(data, Mapping):
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
            form = [(k, v) for k, v in data.items() if v is not None]  # as requests did
            body = urlencode(form, doseq=True).encode("ascii")
        from slapos.system import retry as with_retries  # `retry` is a parameter here

        def failed_to_connect(exc: Exception, delay: float) -> None:
            log.debug("%s %s: %s; retrying in %.1fs", method, call, _short(exc), delay)

        try:
            response = with_retries(
                lambda: self.http.request(method, url, body, sent, allow_redirects=allow_redirects),
                [self.backoff * 2**i for i in range(attempts - 1)],
                lambda exc: isinstance(exc, transport.ConnectFailed),
                clock=self.clock,
                on_retry=failed_to_connect,
            )
        except transport.TLSFailed as exc:
            hint = self._certificate_hint(str(exc))
            # the files that could not be loaded are named in full, not cut to an errno
            reason = str(exc) if str(exc).startswith(transport.TLS_FILES_ERROR) else _short(exc)
            raise ConnectionError(
                f"master {self.master_url}: TLS error on {method} {call}: {reason}"
                + (f" ({hint})" if hint else "")
            ) from exc
        except transport.ConnectFailed as exc:
            hint = self._certificate_hint(str(exc))
            raise ConnectionError(
                f"cannot connect to master {self.master_url} ({method} {call}): "
                f"{_short(exc)} ({hint or 'check master_url and that the master is running'})"
            ) from exc
        except transport.TimedOut as exc:
            raise ConnectionError(
                f"master {self.master_url} did not answer {method} {call} within {self.timeout}s"
            ) from exc
        except transport.TransportError as exc:  # invalid URL or proxy, refused answer
            raise ConnectionError(
                f"cannot call master {self.master_url} ({method} {call}): "
                + " ".join(str(exc).split())
            ) from exc
        self._raise_for_status(method, call, response)
        return response

    def _certificate_hint(self, reason: str) -> str:
        """What to add when we sent no client certificate to an https master and `reason`
        (an error, or "" for an HTTP refusal) shows it refused us: a master that requires
        one ends the connection after the handshake, with an alert or without."""
        if self.cert_file or not self.master_url.startswith("https"):
            return ""
        if not reason or "CERTIFICATE_REQUIRED" in reason.upper():
            return "the master requires a client certificate: set key_file and cert_file"
        closed = ("EOF occurred", "reset by peer", "closed the connection", "HANDSHAKE_FAILURE")
        if any(marker in reason for marker in closed):
            return "sent no client certificate: if one is required, set key_file and cert_file"
        return ""

    def _raise_for_status(self, method: str, call: str, response: transport.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        body = response.text
        where = f"master {self.master_url} answered {method} {call} with HTTP {status}"
        summary = body_summary(body)
        message = f"{where}: {summary}" if summary else where
        if status == 404:
            raise NotFoundError(message)
        if status == 408:
            raise ResourceNotReady(message)
        if status in (401, 403):
            hint = self._certificate_hint("")
            if hint:
                message = f"{message} ({hint})"
            raise AuthenticationError(message, status, body)
        if status in SERVER_ERROR_STATUSES or status >= 500:
            raise ServerError(message)
        raise HTTPError(message, status, body)


def _with_params(url: str, params: Params | None) -> str:
    """`url` with `params` added to its query; None values left out (as requests does)."""
    if not params:
        return url
    query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _short(exc: BaseException) -> str:
    """Transport messages may nest reprs; keep the innermost reason, on one line."""
    text = " ".join(str(exc).split())
    match = re.search(r"\[Errno [^\]]+\] [^'\")]+", text)
    if match:
        return match.group(0).strip()
    match = re.search(r"(Failed to resolve|Name or service not known|timed out)[^'\")]*", text)
    if match:
        return match.group(0).strip()
    return text if len(text) <= 200 else text[:197] + "..."
