"""Keep-alive HTTP(S) for MasterSession, on the standard library's `http.client`.

Why not `requests`: on a local master, requests' per-call machinery (hooks, adapters,
cookie jars, urllib3's pool and retry objects) cost more than the master's own work
(~1.9 ms against ~0.9 ms per call here), and importing it took ~47 ms of every
`slapos node` run. This module does only what the SLAP client needs:

* one idle-connection pool per (scheme, host, port), thread-safe; a pooled connection the
  server has closed is noticed before reuse;
* request line, headers and body sent in one write (no Nagle/delayed-ACK stall);
* TLS with an optional client certificate, the server verified against a CA file when one
  is given (hostname included), not verified otherwise (upstream's behaviour);
* a timeout on connect and on every read;
* HTTP proxies given once (CONNECT tunnel for https), redirects followed like requests.

Failures raise the `TransportError` subclasses below; MasterSession turns them into the
slap exceptions. Imports only the standard library.
"""

from __future__ import annotations

import base64
import http.client
import select
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

#: Statuses after which requests follows `Location` (and so do we).
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
MAX_REDIRECTS = 30


class TransportError(Exception):
    """The HTTP exchange itself failed (no status to report)."""


class ConnectFailed(TransportError):
    """Could not connect, or the connection broke: safe to retry an idempotent call."""


class TLSFailed(TransportError):
    """TLS handshake or certificate failure."""


class TimedOut(TransportError):
    """Connected, but no complete answer within the timeout."""


class BadURL(TransportError):
    """The URL cannot be requested (scheme, host or port)."""


@dataclass
class Response:
    """What requests' Response offered that slapos uses: status, headers, body."""

    status_code: int
    content: bytes
    headers: http.client.HTTPMessage
    url: str

    @property
    def text(self) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        try:
            return self.content.decode(charset, "replace")
        except LookupError:  # unknown charset name
            return self.content.decode("utf-8", "replace")


class _OneWrite:
    """Holds the header block back so that it leaves with the body, in one write.

    http.client writes them separately: two packets, and the server wakes up twice.
    """

    hold_headers = False
    _held = b""

    def send(self, data: Any) -> None:
        if self.hold_headers:
            self.hold_headers = False
            self._held = bytes(data)
            return
        if self._held:
            data, self._held = self._held + bytes(data), b""
        super().send(data)  # type: ignore[misc]


class _HTTPConnection(_OneWrite, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    netloc: str
    path: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise BadURL(f"invalid URL {url!r} (http:// or https:// and a host expected)")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise BadURL(f"invalid port in URL {url!r}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, parts.hostname, port, parts.netloc.rpartition("@")[2], path)


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed (or is out of sync)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class HttpClient:
    """Sends requests over pooled keep-alive connections; see the module docstring."""

    def __init__(
        self,
        *,
        timeout: float | None,
        cert_file: str | None = None,
        key_file: str | None = None,
        ca_file: str | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.cert_file = cert_file
        self.key_file = key_file
        self.ca_file = ca_file
        self.proxies = dict(proxies or {})
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        allow_redirects: bool = True,
    ) -> Response:
        """One call; redirects followed (303, and 301/302 after a POST, become GETs)."""
        sent = dict(headers)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._exchange(method, url, body, sent)
            location = response.headers.get("Location")
            if not allow_redirects or response.status_code not in REDIRECT_STATUSES:
                return response
            if not location:
                return response
            previous, url = url, urljoin(url, location)
            status = response.status_code
            if method != "HEAD" and (status == 303 or (status in (301, 302) and method == "POST")):
                method, body = "GET", None
                sent = {k: v for k, v in sent.items() if k.lower() != "content-type"}
            if urlsplit(previous).netloc != urlsplit(url).netloc:
                sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
        raise ConnectFailed(f"more than {MAX_REDIRECTS} redirects")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    # -- internals -------------------------------------------------------------------

    def _exchange(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        target = _target(url)
        key = (target.scheme, target.host, target.port)
        connection = self._checkout(key) or self._connect(target)
        path = target.path
        sent = {"Host": target.netloc, **headers}
        proxy = self.proxies.get(target.scheme)
        if proxy and target.scheme == "http":
            path = f"http://{target.netloc}{target.path}"  # absolute form, for the proxy
            auth = _proxy_authorization(proxy)
            if auth:
                sent["Proxy-Authorization"] = auth
        try:
            if body:
                connection.hold_headers = True  # type: ignore[attr-defined]
            connection.request(method, path, body=body, headers=sent)
            answer = connection.getresponse()
            content = answer.read()
        except TimeoutError as exc:
            connection.close()
            raise TimedOut(str(exc) or "timed out") from exc
        except ssl.SSLError as exc:
            connection.close()
            raise TLSFailed(str(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise ConnectFailed(f"connection aborted: {exc!r}") from exc
        if answer.will_close:
            connection.close()
        else:
            with self._lock:
                self._idle.setdefault(key, []).append(connection)
        return Response(answer.status, content, answer.headers, url)

    def _checkout(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                pool = self._idle.get(key)
                if not pool:
                    return None
                connection = pool.pop()
            if not _dropped(connection):
                return connection
            connection.close()

    def _connect(self, target: _Target) -> http.client.HTTPConnection:
        proxy = self.proxies.get(target.scheme)
        host, port = target.host, target.port
        tunnel_headers: dict[str, str] = {}
        if proxy:
            proxy_target = _target(proxy if "://" in proxy else f"http://{proxy}")
            host, port = proxy_target.host, proxy_target.port
            auth = _proxy_authorization(proxy)
            if auth:
                tunnel_headers["Proxy-Authorization"] = auth
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _HTTPSConnection(
                host, port, timeout=self.timeout, context=self._ssl_context()
            )
            if proxy:
                connection.set_tunnel(target.host, target.port, headers=tunnel_headers)
        else:
            connection = _HTTPConnection(host, port, timeout=self.timeout)
        try:
            connection.connect()
        except ssl.SSLError as exc:
            connection.close()
            raise TLSFailed(str(exc)) from exc
        except TimeoutError as exc:
            connection.close()
            raise ConnectFailed(f"connection to {host} port {port} timed out") from exc
        except OSError as exc:
            connection.close()
            raise ConnectFailed(str(exc)) from exc
        return connection

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                if self.ca_file:
                    context = ssl.create_default_context(cafile=self.ca_file)
                else:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                if self.cert_file:
                    context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:  # FileNotFoundError, bad PEM
                raise TLSFailed(
                    f"cannot load the TLS files (cert {self.cert_file}, key {self.key_file}, "
                    f"CA {self.ca_file}): {exc}"
                ) from exc
            self._context = context
        return self._context


def _proxy_authorization(proxy: str) -> str | None:
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.username is None:
        return None
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


def environ_proxies(url: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The proxies `environ` sets for `url`: `http_proxy`, `https_proxy`, `all_proxy`.

    As requests read them: lower-case names win over upper-case ones, `HTTP_PROXY` is
    ignored under CGI (`REQUEST_METHOD` set), and `no_proxy` lists host names, domain
    suffixes, `*` or (for IP hosts) networks. (urllib.request has the same logic, but costs
    ~5 ms to import on every `slapos node` run.)
    """
    found: dict[str, str] = {}
    for name, value in environ.items():
        if value and name[-6:].lower() == "_proxy" and not name.islower():
            found[name[:-6].lower()] = value
    if "REQUEST_METHOD" in environ:
        found.pop("http", None)
    for name, value in environ.items():
        if name[-6:] == "_proxy" and name.islower():
            if value:
                found[name[:-6]] = value
            else:
                found.pop(name[:-6], None)
    parts = urlsplit(url)
    if _bypassed(parts.hostname or "", parts.port, found.get("no", "")):
        return {}
    proxies = {scheme: found.get(scheme) or found.get("all") for scheme in ("http", "https")}
    return {scheme: proxy for scheme, proxy in proxies.items() if proxy}


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    host = host.lower()
    for entry in no_proxy.replace(" ", "").split(","):
        entry = entry.lstrip(".").lower()
        if not entry:
            continue
        if entry == "*" or host == entry or host.endswith("." + entry):
            return True
        if port is not None and f"{host}:{port}" == entry:
            return True
        if "/" in entry and _in_network(host, entry):
            return True
    return False


def _in_network(host: str, network: str) -> bool:
    import ipaddress  # already loaded by urllib.parse; local to keep the module's top light

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(network, strict=False)
    except ValueError:  # not an IP host, or not a network
        return False
