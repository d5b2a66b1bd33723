"""HTTP transport to a SlapOS master: the only module of slapos.slap that uses `requests`.

One `requests.Session` per connection (keep-alive), the client certificate on https, the
master's certificate verified against `master_ca_file` when one is given, a timeout on
every call, bounded retries with backoff on connection errors for GETs only (they are
idempotent; a POST may have been applied), and HTTP statuses mapped to the slap
exceptions (protocol.md §2.4) with one-line messages naming master, call and status.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

from slapos import __version__
from slapos.slap import wire
from slapos.slap.exception import (
    AuthenticationError,
    ConnectionError,
    HTTPError,
    NotFoundError,
    ResourceNotReady,
    ServerError,
)

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
    """The useful part of an error body, on one line: HTML paragraphs or the raw text."""
    paragraphs = _PARAGRAPH.findall(text)
    if paragraphs:
        text = " ".join(paragraphs)
    text = " ".join(_TAG.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MasterSession:
    """Talks HTTP to one master: `get`/`post` return the body bytes or raise slap errors."""

    def __init__(  # noqa: PLR0913 - mirrors initializeConnection
        self,
        master_url: str,
        *,
        key_file: str | None = None,
        cert_file: str | None = None,
        master_ca_file: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.master_url = normalise_master_url(master_url)
        self.key_file = key_file
        self.cert_file = cert_file
        self.master_ca_file = master_ca_file
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self._sleep = sleep
        if not master_ca_file:
            # Upstream never verifies the master; without master_ca_file neither do we, and
            # urllib3's warning on every call would only bury real messages. (Idempotent,
            # and unlike catch_warnings() safe with threads.)
            from urllib3.exceptions import InsecureRequestWarning

            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        if session is None:
            session = requests.Session()
            # With trust_env, requests re-reads the proxy variables and ~/.netrc on every
            # call (a third of a call's cost on a local master). The master URL never
            # changes: read its proxy settings once, and leave ~/.netrc alone (the SLAP API
            # authenticates with certificates).
            session.trust_env = False
            session.proxies.update(requests.utils.get_environ_proxies(self.master_url))
        self.session = session
        self.session.headers.update({"Accept": "*/*", "User-Agent": USER_AGENT})

    # -- public API ------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        return urljoin(self.master_url, path.lstrip("/"))

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
        form = {k: ("None" if v is None else v) for k, v in (data or {}).items()}
        # Encode the form ourselves: requests would pass a str body that http.client sends
        # in a second packet, and Nagle + delayed ACK then cost ~40 ms per call.
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        body = urlencode(form).encode("ascii")
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
        self.session.close()

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
    ) -> requests.Response:
        """One HTTP call with timeout, TLS settings, retries and status mapping."""
        call = call or url
        attempts = 1 + (self.retries if (method == "GET" if retry is None else retry) else 0)
        delay = self.backoff
        for attempt in range(1, attempts + 1):
            try:
                response = self._send(method, url, params, data, headers, allow_redirects)
                break
            except requests.exceptions.SSLError as exc:
                raise ConnectionError(
                    f"master {self.master_url}: TLS error on {method} {call}: {_short(exc)}"
                ) from exc
            except requests.exceptions.ConnectionError as exc:  # includes ConnectTimeout
                if attempt < attempts:
                    log.debug("%s %s: %s; retrying in %.1fs", method, call, _short(exc), delay)
                    self._sleep(delay)
                    delay *= 2
                    continue
                raise ConnectionError(
                    f"cannot connect to master {self.master_url} ({method} {call}): "
                    f"{_short(exc)} (check master_url and that the master is running)"
                ) from exc
            except requests.exceptions.Timeout as exc:
                raise ConnectionError(
                    f"master {self.master_url} did not answer {method} {call} within "
                    f"{self.timeout}s"
                ) from exc
            except requests.exceptions.RequestException as exc:  # invalid URL, schema...
                raise ConnectionError(
                    f"cannot call master {self.master_url} ({method} {call}): {_short(exc)}"
                ) from exc
        self._raise_for_status(method, call, response)
        return response

    def _send(
        self,
        method: str,
        url: str,
        params: Params | None,
        data: Params | bytes | None,
        headers: Mapping[str, str] | None,
        allow_redirects: bool,
    ) -> requests.Response:
        cert = None
        if url.startswith("https") and self.cert_file:
            cert = (self.cert_file, self.key_file) if self.key_file else self.cert_file
        verify: bool | str = self.master_ca_file or False
        return self.session.request(
            method,
            url,
            params=params,
            data=data,
            headers=dict(headers or {}),
            cert=cert,
            verify=verify,
            timeout=self.timeout,
            allow_redirects=allow_redirects,
        )

    def _raise_for_status(self, method: str, call: str, response: requests.Response) -> None:
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
            raise AuthenticationError(message, status, body)
        if status in SERVER_ERROR_STATUSES or status >= 500:
            raise ServerError(message)
        raise HTTPError(message, status, body)


def _short(exc: BaseException) -> str:
    """requests' messages nest several reprs; keep the innermost reason, on one line."""
    text = " ".join(str(exc).split())
    match = re.search(r"\[Errno [^\]]+\] [^'\")]+", text)
    if match:
        return match.group(0).strip()
    match = re.search(r"(Failed to resolve|Name or service not known|timed out)[^'\")]*", text)
    if match:
        return match.group(0).strip()
    return text if len(text) <= 200 else text[:197] + "..."
