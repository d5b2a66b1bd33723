"""A request as the proxy's handlers read it: the WSGI environ, parsed lazily (query,
form body, headers, the URL the client used behind one reverse-proxy hop, the
`X-SlapPartition` authorization)."""

from __future__ import annotations

from typing import Any

from slapos.proxy.form import parse_form
from slapos.proxy.model import BadRequest, ProxyHTTPError

#: a SLAP call's body, at most (the server layer's max_body_size refuses larger first)
MAX_BODY = 64 * 1024 * 1024


class Request:
    """What a handler needs from the WSGI environ, parsed lazily."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET").upper()
        self.path: str = environ.get("PATH_INFO", "") or "/"
        self._query: dict[str, str] | None = None
        self._form: dict[str, str] | None = None
        self._body: bytes | None = None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = parse_form(self.environ.get("QUERY_STRING", ""))
        return self._query

    def body(self) -> bytes:
        if self._body is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise BadRequest("bad Content-Length") from None
            if length > MAX_BODY:
                raise PayloadTooLarge(f"request body larger than {MAX_BODY} bytes")
            try:
                self._body = self.environ["wsgi.input"].read(length) if length > 0 else b""
            except ValueError as exc:  # a server-side body error: malformed, truncated, too large
                if getattr(exc, "status", None) == 413:
                    raise PayloadTooLarge(str(exc)) from None
                raise BadRequest(f"cannot read the request body: {exc}") from None
        return self._body

    @property
    def form(self) -> dict[str, str]:
        """POST form fields (urlencoded body); query arguments for GET."""
        if self._form is None:
            if self.method == "GET":
                self._form = self.query
            else:
                body = self.body()
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    raise BadRequest("form body is not UTF-8") from None
                self._form = parse_form(body)
        return self._form

    def field(self, name: str) -> str:
        """A required form field: 400 naming it when absent."""
        try:
            return self.form[name]
        except KeyError:
            raise BadRequest(f"missing parameter {name!r}") from None

    def header(self, name: str) -> str | None:
        value = self.environ.get("HTTP_" + name.upper().replace("-", "_"))
        return str(value) if value is not None else None

    @property
    def scheme(self) -> str:
        forwarded = self.header("X-Forwarded-Proto")
        if forwarded:
            return forwarded.split(",")[-1].strip()
        return str(self.environ.get("wsgi.url_scheme", "http"))

    @property
    def host(self) -> str:
        host = self.header("Host")
        if host:
            return host
        name, port = self.environ.get("SERVER_NAME", "localhost"), self.environ.get("SERVER_PORT")
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        return f"{name}:{port}" if port else name

    @property
    def base_url(self) -> str:
        """Absolute URL of this proxy, honouring one reverse proxy hop (X-Forwarded-*)."""
        prefix = (self.header("X-Forwarded-Prefix") or "").split(",")[-1].strip().rstrip("/")
        return f"{self.scheme}://{self.host}{prefix}"

    def partition_header(self) -> tuple[str | None, str | None] | None:
        """`Authorization: X-SlapPartition computer_id=.., computer_partition_id=..`."""
        value = self.header("Authorization")
        if not value:
            return None
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "x-slappartition":
            return None
        pairs: dict[str, str] = {}
        for item in rest.split(","):
            key, _, val = item.partition("=")
            pairs[key.strip()] = val.strip()
        return pairs.get("computer_id"), pairs.get("computer_partition_id")


class PayloadTooLarge(ProxyHTTPError):
    status = 413
