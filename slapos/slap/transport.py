"""Keep-alive HTTP(S) for MasterSession, on the standard library's `http.client`.

`http.client` parses the answers (status line, header block, chunked and length-delimited
bodies) and gets CPython's security fixes; this module adds what the slap client needs on
top of it, and nothing that parses HTTP:

* one pool of idle keep-alive connections per (scheme, host, port), thread-safe; a pooled
  connection the server has closed (or that has unread bytes) is noticed before reuse;
* bounded answers: an answer larger than `max_answer` bytes is refused, from its
  Content-Length before anything is read, or as it arrives when it has none; bodies are
  read in pieces of at most `_PIECE` bytes, so a length the server only claims is never
  allocated (gh-119451: `HTTPResponse.read()` without a size allocated the claimed length
  up front until CPython 3.12.4); two differing Content-Length fields, or one that is not
  a number, are refused, and so is a body shorter than its Content-Length;
* TLS with an optional client certificate; the master's certificate and name verified
  against the system's trust store, or against `ca_file` when one is given; `verify=False`
  turns that off (MasterSession warns);
* a timeout on connect and on every read and write;
* HTTP proxies (absolute-form requests for http, a CONNECT tunnel for https); a proxy of
  any other kind (`all_proxy=socks5://...`) is refused with a clear error instead of being
  spoken to as if it were an HTTP proxy;
* redirects followed like requests follows them.

Failures raise the `TransportError` subclasses below; MasterSession turns them into the
slap exceptions. Imports only the standard library (`http.client` itself is imported on
the first request: the slap package stays cheap to import).
"""

from __future__ import annotations

import base64
import select
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

if TYPE_CHECKING:
    import http.client

#: Statuses after which requests follows `Location` (and so do we).
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
MAX_REDIRECTS = 30
#: Largest answer body accepted by default (a master's largest document, the full
#: information of a computer with hundreds of partitions, is a few MiB).
DEFAULT_MAX_ANSWER = 128 * 1024 * 1024
#: Bytes read from the socket at a time: what a body can cost before it has arrived.
_PIECE = 256 * 1024


class TransportError(Exception):
    """The HTTP exchange itself failed (no status to report)."""


class ConnectFailed(TransportError):
    """Could not connect, or the connection broke: safe to retry an idempotent call."""


class TLSFailed(TransportError):
    """TLS handshake or certificate failure."""


class TimedOut(TransportError):
    """Connected, but no complete answer within the timeout."""


#: How a TLS failure before any connection (a file that cannot be loaded) starts.
TLS_FILES_ERROR = "cannot load the TLS files"


class BadURL(TransportError):
    """The URL cannot be requested (scheme, host, port, or an unusable proxy for it)."""


class BadAnswer(TransportError):
    """The server answered something this client refuses (too large, ambiguous length)."""


@dataclass(frozen=True)
class TLSSettings:
    """How https connections are made: the client certificate, and how the server's is
    checked (`ca_file`, else the system's trust store; `verify=False`: not at all)."""

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    verify: bool = True


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


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
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
    return _Target(scheme, parts.hostname, port, path)


def _dropped(sock: Any) -> bool:
    """An idle keep-alive socket that is readable has been closed (or is out of sync)."""
    if sock is None:  # http.client closed it (the answer ended the connection)
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed: fileno() is -1
        return True
    return bool(readable)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    """The answer's Content-Length, checked: one value, and a number."""
    values = response.headers.get_all("Content-Length") or []
    distinct = {value.strip() for value in values}
    if not distinct:
        return None
    if len(distinct) > 1:
        raise BadAnswer(
            f"answer refused: differing Content-Length fields ({', '.join(sorted(distinct))})"
        )
    text = distinct.pop()
    if not (text.isascii() and text.isdigit()):
        raise BadAnswer(f"answer refused: invalid Content-Length {text[:40]!r}")
    return int(text)


def _read_body(response: http.client.HTTPResponse, limit: int) -> bytes:
    """The body, at most `limit` bytes, read piece by piece."""
    import http.client

    expected = _content_length(response)
    if response.length == 0:  # HEAD, 204, 304, or an empty body: nothing to read
        response.close()  # done with it: http.client lets the connection send again
        return b""
    if expected is not None and expected > limit:
        raise BadAnswer(
            f"answer of {expected} bytes refused: larger than the limit of {limit} bytes"
        )
    parts: list[bytes] = []
    received = 0
    try:
        while piece := response.read(_PIECE):
            received += len(piece)
            if received > limit:
                raise BadAnswer(f"answer refused: larger than the limit of {limit} bytes")
            parts.append(piece)
    except http.client.IncompleteRead as exc:
        raise ConnectFailed(
            "connection aborted: the server closed the connection in the middle of the "
            f"answer ({received + len(exc.partial)} bytes received)"
        ) from None
    if response.length:  # http.client counts down what Content-Length announced
        raise ConnectFailed(
            f"connection aborted: the server closed the connection after {received} of "
            f"{expected} bytes of the answer"
        )
    return b"".join(parts)


class HttpClient:
    """Sends requests over pooled keep-alive `http.client` connections (module docstring)."""

    def __init__(
        self,
        *,
        timeout: float | None,
        tls: TLSSettings | None = None,
        proxies: Mapping[str, str] | None = None,
        max_answer: int = DEFAULT_MAX_ANSWER,
    ) -> None:
        self.timeout = timeout
        self.tls = tls or TLSSettings()
        self.proxies = dict(proxies or {})
        self.max_answer = max_answer
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
        sent = headers
        for _ in range(MAX_REDIRECTS + 1):
            response = self._exchange(method, url, body, sent)
            if not allow_redirects or response.status_code not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
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
        import http.client

        target = _target(url)
        path, sent = self._route(target, headers)
        key = (target.scheme, target.host, target.port)
        connection = self._checkout(key) or self._connection(target)
        try:
            try:
                connection.request(method, path, body, sent)
            except ssl.SSLError:  # a ValueError too (certificate verification)
                raise
            except (http.client.InvalidURL, ValueError) as exc:  # control bytes, non-ASCII
                raise BadURL(f"cannot send {method} {path[:200]!r}: {exc}") from None
            answer = connection.getresponse()
            if 100 <= answer.status < 200:  # http.client skips only 100 Continue
                raise BadAnswer(f"unexpected interim answer HTTP {answer.status}")
            content = _read_body(answer, self.max_answer)
        except TimeoutError as exc:
            connection.close()
            raise TimedOut(f"timed out after {self.timeout} s") from exc
        except ssl.SSLError as exc:
            connection.close()
            raise TLSFailed(_tls_reason(exc)) from exc
        except (http.client.HTTPException, OSError) as exc:
            connection.close()
            raise ConnectFailed(f"connection aborted: {_reason(exc)}") from exc
        except TransportError:
            connection.close()
            raise
        if answer.will_close:
            connection.close()  # http.client reconnects it on its next request
        with self._lock:
            self._idle.setdefault(key, []).append(connection)
        return Response(answer.status, content, answer.headers, url)

    def _route(self, target: _Target, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """The request target and headers: absolute form and proxy credentials when an
        HTTP proxy relays plain http (https goes through a tunnel, see _connection)."""
        proxy = self.proxies.get(target.scheme)
        if proxy is None:
            return target.path, dict(headers)
        _proxy_target(proxy, target.scheme)  # refuses what is not an HTTP proxy
        if target.scheme == "https":
            return target.path, dict(headers)
        sent = dict(headers)
        auth = _proxy_authorization(proxy)
        if auth:
            sent["Proxy-Authorization"] = auth
        return f"http://{_netloc(target)}{target.path}", sent

    def _checkout(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        with self._lock:
            pool = self._idle.get(key)
            if not pool:
                return None
            connection = pool.pop()
        if _dropped(connection.sock):
            connection.close()  # http.client opens a new one on the next request
        return connection

    def _connection(self, target: _Target) -> http.client.HTTPConnection:
        """A new connection for `target`, not connected yet (http.client connects it)."""
        import http.client

        proxy = self.proxies.get(target.scheme)
        host, port = target.host, target.port
        if proxy:
            proxy_target = _proxy_target(proxy, target.scheme)
            host, port = proxy_target.host, proxy_target.port
        if target.scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=self.timeout)
        connection = http.client.HTTPSConnection(
            host, port, timeout=self.timeout, context=self._ssl_context()
        )
        if proxy:
            auth = _proxy_authorization(proxy)
            tunnel_headers = {"Proxy-Authorization": auth} if auth else {}
            connection.set_tunnel(target.host, target.port, headers=tunnel_headers)
        return connection

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            tls = self.tls
            try:
                if not tls.verify:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                elif tls.ca_file:
                    context = ssl.create_default_context(cafile=tls.ca_file)
                else:
                    context = ssl.create_default_context()  # the system's trust store
                if tls.cert_file:
                    context.load_cert_chain(tls.cert_file, tls.key_file)
            except (OSError, ssl.SSLError) as exc:  # FileNotFoundError, bad PEM
                import os

                given = {"CA": tls.ca_file, "cert": tls.cert_file, "key": tls.key_file}
                named = {k: v for k, v in given.items() if v}
                # ssl's errors do not say which file: the missing ones, else all of them
                missing = {k: v for k, v in named.items() if not os.path.exists(v)}
                files = ", ".join(f"{k} {v}" for k, v in (missing or named).items())
                reason = "no such file" if missing else " ".join(str(exc).split())
                raise TLSFailed(f"{TLS_FILES_ERROR} ({files}): {reason}") from exc
            self._context = context
        return self._context


def _netloc(target: _Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _proxy_target(proxy: str, scheme: str) -> _Target:
    """Where an HTTP proxy listens; any other kind of proxy is refused."""
    proxy_scheme = urlsplit(proxy).scheme.lower() if "://" in proxy else "http"
    if proxy_scheme != "http":
        raise BadURL(
            f"the {scheme} proxy {proxy!r} from the environment (http_proxy, https_proxy or "
            f"all_proxy) is not an http:// proxy, and slapos reaches masters only directly or "
            f"through an HTTP proxy: unset it, or list the master's host in no_proxy"
        )
    return _target(proxy if "://" in proxy else f"http://{proxy}")


def _proxy_authorization(proxy: str) -> str | None:
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.username is None:
        return None
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


def _reason(exc: BaseException) -> str:
    import http.client

    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.BadStatusLine):
        return f"not an HTTP answer (status line {str(exc)[:80]!r})"
    if isinstance(exc, http.client.LineTooLong | http.client.HTTPException):
        return f"malformed answer ({type(exc).__name__}: {exc})"
    return str(exc) or type(exc).__name__


def _tls_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the master's certificate could not be verified ({exc.verify_message}): give its "
            f"CA in master_ca_file"
        )
    return str(exc)


# -- form encoding ---------------------------------------------------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
#: quote_plus for one byte (a character of a latin-1 decoded UTF-8 string), by ordinal.
_QUOTE_PLUS = [
    chr(byte) if byte in _UNRESERVED else "+" if byte == 0x20 else f"%{byte:02X}"
    for byte in range(256)
]


def quote_plus(text: str) -> str:
    """`urllib.parse.quote_plus(text)`, the same characters, in one str.translate."""
    raw = text if text.isascii() else text.encode("utf-8").decode("latin-1")
    return raw.translate(_QUOTE_PLUS)


def _quote_value(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1").translate(_QUOTE_PLUS)
    return quote_plus(value if type(value) is str else str(value))


def urlencode(query: Mapping[Any, Any] | Sequence[tuple[Any, Any]], doseq: bool = False) -> str:
    """`urllib.parse.urlencode(query, doseq)`, the same characters.

    Keys and values are quoted as urlencode's default `quote_plus` does (UTF-8, space as
    `+`, only letters, digits and `_.-~` left as they are); bytes are quoted as bytes,
    anything else as its str(); with `doseq`, a non-string sequence value gives one
    `key=item` per item.
    """
    items = getattr(query, "items", None)
    if items is not None:
        pairs = items()
    else:
        pairs = query
        if len(query) and not isinstance(query[0], tuple):
            raise TypeError("not a valid non-string sequence or mapping object")
    parts = []
    for key, value in pairs:
        name = quote_plus(key) if type(key) is str else _quote_value(key)
        if type(value) is str:
            parts.append(f"{name}={quote_plus(value)}")
        elif not doseq or isinstance(value, bytes):
            parts.append(f"{name}={_quote_value(value)}")
        elif isinstance(value, str):  # a subclass: doseq quotes it as it is, not its str()
            parts.append(f"{name}={quote_plus(str.__str__(value))}")
        else:
            try:
                len(value)
            except TypeError:
                parts.append(f"{name}={_quote_value(value)}")
            else:
                parts.extend(f"{name}={_quote_value(item)}" for item in value)
    return "&".join(parts)


def environ_proxies(url: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The proxies `environ` sets for `url`: `http_proxy`, `https_proxy`, `all_proxy`.

    As requests read them: lower-case names win over upper-case ones, `HTTP_PROXY` is
    ignored under CGI (`REQUEST_METHOD` set), and `no_proxy` lists host names, domain
    suffixes, `*` or (for IP hosts) networks. (urllib.request has the same logic, but importing
    it would cost every `slapos node` run.)
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
