"""The web panel (docs/panel.rst): `/panel/` and its static files, `/` redirecting there,
`/public/<file>` downloads, and the cross-site guard of every state-changing call.

The panel is static HTML, CSS and JavaScript shipped in `panel_static/` (no build step);
it reads and changes everything through JSON-RPC (slapos.proxy.jsonrpc, jsonrpc_wip).

Cross-site protection: a browser sends `Origin` and `Sec-Fetch-Site` with every POST. A
POST that carries either must come from this proxy's own origin and carry the panel's
token (`X-SlapOS-Panel-Token`, written into the panel's page, kept in the database so
that an open panel survives a restart). Clients that are not browsers (the slap library,
nodes, `slapos` commands) send neither header and are not concerned. The page with the
token and those POSTs are refused under a host name the proxy does not know as its own
(`trusted_host`): a page of another site whose name was made to point at the proxy's
address (DNS rebinding) would be same-origin otherwise.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from slapos.proxy.model import Forbidden, NotFound
from slapos.proxy.service import Master

if TYPE_CHECKING:
    from slapos.proxy.app import Handler, ProxyApp, Response
    from slapos.proxy.request import Request

STATIC = Path(__file__).with_name("panel_static")
TOKEN_HEADER = "X-SlapOS-Panel-Token"
_TOKEN_CONFIG = "panel_token"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: the panel loads nothing from elsewhere, runs no inline script and cannot be framed
_SECURITY = [
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
]


def panel_url(server_url: str) -> str:
    """The panel's address for a person: a wildcard listening address becomes loopback."""
    from urllib.parse import urlsplit

    parts = urlsplit(server_url)
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(parts.hostname or "")
    if host is not None:
        server_url = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    return server_url.rstrip("/") + "/panel/"


def token(app: ProxyApp) -> str:
    """The panel token, made on first use and kept in the database."""
    stored: str | None = app.read(lambda m: m.store.get_config(_TOKEN_CONFIG))
    if stored:
        return stored

    def make(master: Master) -> str:
        existing = master.store.get_config(_TOKEN_CONFIG)
        if existing:
            return existing
        value = os.urandom(24).hex()
        master.store.set_config(_TOKEN_CONFIG, value)
        return value

    return app.write(None, make)  # type: ignore[no-any-return]


def trusted_host(app: ProxyApp, request: Request) -> bool:
    """Whether the browser reached us under a name that cannot be an attacker's
    (DNS rebinding): an address, localhost, this machine's name, `host` or a name of
    `panel_host_list`."""
    import ipaddress
    import socket

    host = (request.header("Host") or "").strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass  # a name: checked below
    if name == "localhost" or name.endswith(".localhost"):
        return True
    names = {app.config.host.strip("[]").lower(), socket.gethostname().lower()}
    names.update(n.lower().rstrip(".") for n in app.config.panel_host_list)
    return name in names


def _refuse_host(request: Request) -> Forbidden:
    name = request.header("Host") or ""
    return Forbidden(
        f"the panel does not answer under the name {name!r}: add it to panel_host_list "
        "in [slapproxy] if it is this proxy's"
    )


def guard(app: ProxyApp, request: Request) -> None:
    """Refuse (403) a state-changing call a browser makes for another site, under an
    untrusted name or without the panel's token; see the module docstring."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.header("Origin")
    site = request.header("Sec-Fetch-Site")
    if origin is None and site is None:
        return  # not a browser
    if not trusted_host(app, request):
        raise _refuse_host(request)
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"cross-site request refused ({site})")
    if origin is not None and origin not in _own_origins(request):
        raise Forbidden(f"cross-site request refused (origin {origin})")
    if request.header(TOKEN_HEADER) != token(app):
        raise Forbidden(f"missing or stale {TOKEN_HEADER}: reload the panel")


def _own_origins(request: Request) -> set[str]:
    """This proxy's origin as the browser sees it, behind one reverse proxy too."""
    hosts = {request.host}
    forwarded = request.header("X-Forwarded-Host")
    if forwarded:
        hosts.add(forwarded.split(",")[-1].strip())
    return {f"{request.scheme}://{host}" for host in hosts}


def _asset(app: ProxyApp, request: Request, name: str) -> Response:
    from slapos.proxy.app import Response

    path = STATIC / name
    suffix = path.suffix
    if "/" in name or name.startswith(".") or suffix not in _TYPES or not path.is_file():
        raise NotFound(f"no panel file {name!r}")
    body = path.read_bytes()
    headers = list(_SECURITY)
    if name == "index.html":
        if not trusted_host(app, request):
            raise _refuse_host(request)
        body = body.replace(b"{{token}}", token(app).encode())
        headers.append(("Cache-Control", "no-store"))
        return Response(body, 200, _TYPES[suffix], headers)
    etag = f'"{len(body):x}-{zlib.crc32(body):08x}"'
    headers += [("Cache-Control", "no-cache"), ("ETag", etag)]
    if request.header("If-None-Match") == etag:
        return Response(b"", 304, _TYPES[suffix], headers)
    return Response(body, 200, _TYPES[suffix], headers)


def root(app: ProxyApp, request: Request) -> Response:
    from slapos.proxy.app import redirect

    return redirect(f"{request.base_url}/panel/")


def panel(app: ProxyApp, request: Request) -> Response:
    """`/panel/...`: the page, its files, and `/panel/public/` (upstream's address)."""
    from slapos.proxy.app import redirect, text

    if request.method not in ("GET", "HEAD"):
        return text(f"method {request.method} not allowed on {request.path}", 405)
    if request.path == "/panel":
        return redirect(f"{request.base_url}/panel/", 308)
    name = request.path[len("/panel/") :]
    if name.startswith("public/"):
        return public_file(app, request, name[len("public/") :])
    return _asset(app, request, name or "index.html")


def public(app: ProxyApp, request: Request) -> Response:
    from slapos.proxy.app import text

    if request.method not in ("GET", "HEAD"):
        return text(f"method {request.method} not allowed on {request.path}", 405)
    return public_file(app, request, request.path[len("/public/") :])


def public_file(app: ProxyApp, request: Request, name: str) -> Response:
    """A file of `public_directory_path`, always as a download (never rendered)."""
    from slapos.proxy.app import Response

    directory = app.config.public_directory_path
    if not directory:
        raise Forbidden("no public directory: set public_directory_path in [slapproxy]")
    root_dir = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(root_dir, unquote(name)))
    if not path.startswith(root_dir + os.sep) or not os.path.isfile(path):
        raise NotFound(f"no public file {name!r}")
    size = os.path.getsize(path)
    download = os.path.basename(path).replace('"', "")
    return Response(
        b"",
        200,
        "application/octet-stream",
        [
            ("Content-Disposition", f'attachment; filename="{download}"'),
            ("X-Content-Type-Options", "nosniff"),
        ],
        file=(path, size),
    )


def routes() -> dict[str, tuple[frozenset[str], Handler]]:
    return {"/": (frozenset({"GET"}), root)}


def prefix_routes() -> list[tuple[str, Handler]]:
    from slapos.proxy.release_files import http_proxy

    return [("/panel", panel), ("/public", public), ("/http_proxy", http_proxy)]
