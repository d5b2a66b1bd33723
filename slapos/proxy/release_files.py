"""Software release files for the web panel: `/http_proxy/<scheme>/<netloc>/<path>` and the
release's parameter schemas (`<software_url>.json` and the JSON schemas it names).

Only files of releases this proxy knows (supplied to a computer or used by an instance)
are read: over http(s), URLs on the same host as such a release; on disk, files in the
directory tree of such a release's parent directory (its own directory when that parent
is `/`). Schemas are read only from `.json` files. The request form may also read the
schema of an http(s) release typed by the user, not supplied yet. Every download is capped in size
(`MAX_BYTES`) and time (`TIMEOUT`), so the panel cannot make the proxy fetch anything
else or hang on it.

Schemas are read as `slapos request` reads them (slapos.slap.schema), then every
`$ref` is replaced by what it points to, so that the browser gets one self-contained
schema to build its form from and validate against.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

from slapos.proxy.model import BadRequest, Forbidden, ProxyHTTPError, UpstreamUnreachable
from slapos.proxy.service import Master
from slapos.slap.schema import SchemaUnavailable

if TYPE_CHECKING:
    from slapos.proxy.app import ProxyApp, Response
    from slapos.proxy.request import Request

MAX_BYTES = 8 * 1024 * 1024
TIMEOUT = 10.0
#: nested `$ref`s followed before giving up (a schema that refers to itself)
MAX_DEPTH = 12
#: `$ref`s expanded in one schema at most
MAX_REFS = 2000
#: schema keywords whose value is data, never a schema: no `$ref` is looked for in them
_VALUES = frozenset({"enum", "const", "default", "examples"})


class TimedOut(ProxyHTTPError):
    status = 524


class TooLarge(ProxyHTTPError):
    status = 502


def known_releases(master: Master) -> set[str]:
    urls = {row["software_release"] for row in master.store.partitions(busy_only=True)}
    for computer in master.store.computers():
        urls.update(row["url"] for row in master.store.software_list(computer["reference"]))
    urls.discard(None)
    return urls


def _local_path(url: str) -> str | None:
    if url.startswith("file:"):
        return unquote(urlsplit(url).path)
    if url.startswith("/"):
        return url
    return None


def allowed(url: str, releases: set[str]) -> bool:
    """Whether `url` is a file of one of `releases` (see the module docstring)."""
    path = _local_path(url)
    if path is not None:
        real = os.path.realpath(path)
        for release in releases:
            release_path = _local_path(release)
            if release_path is None:
                continue
            directory = os.path.dirname(os.path.realpath(release_path))
            root = os.path.dirname(directory)
            if root == "/":  # never the whole file system
                root = directory
            if root != "/" and real.startswith(root + "/"):
                return True
        return False
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return any(
        (urlsplit(r).scheme, urlsplit(r).netloc) == (parts.scheme, parts.netloc) for r in releases
    )


def download(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of an http(s) URL; at most MAX_BYTES, TIMEOUT seconds."""
    import requests

    try:
        with requests.request(
            method, url, stream=True, timeout=TIMEOUT, allow_redirects=False
        ) as answer:
            chunks, size = [], 0
            for chunk in answer.iter_content(64 * 1024):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise TooLarge(f"{url} is larger than {MAX_BYTES} bytes")
                chunks.append(chunk)
            return answer.status_code, dict(answer.headers), b"".join(chunks)
    except requests.Timeout:
        raise TimedOut(f"{url} did not answer within {TIMEOUT:g} s") from None
    except requests.RequestException as exc:
        raise UpstreamUnreachable(f"cannot fetch {url}: {type(exc).__name__}") from None


def read(url: str) -> bytes:
    """A release file's bytes, from disk or http(s); ProxyHTTPError when unavailable."""
    path = _local_path(url)
    if path is None:
        status, _, body = download(url)
        if status != 200:
            raise UpstreamUnreachable(f"{url} answered HTTP {status}")
        return body
    try:
        with open(path, "rb") as file:
            body = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UpstreamUnreachable(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(body) > MAX_BYTES:
        raise TooLarge(f"{path} is larger than {MAX_BYTES} bytes")
    return body


# ---- /http_proxy --------------------------------------------------------------------------


def http_proxy(app: ProxyApp, request: Request) -> Response:
    """`/http_proxy/<scheme>/<netloc>/<path>`: GET/HEAD of a release file, as an attachment."""
    from slapos.proxy.app import Response

    if request.method not in ("GET", "HEAD"):
        return Response(f"method {request.method} not allowed on /http_proxy", 405)
    scheme, _, rest = request.path[len("/http_proxy/") :].partition("/")
    netloc, _, path = rest.partition("/")
    if scheme not in ("http", "https") or not netloc:
        raise BadRequest("use /http_proxy/<http|https>/<host[:port]>/<path>")
    query = request.environ.get("QUERY_STRING")
    url = f"{scheme}://{netloc}/{path}" + (f"?{query}" if query else "")
    if not app.read(lambda m: allowed(url, known_releases(m))):
        raise Forbidden(f"{url} is not a file of a software release known to this proxy")
    status, headers, body = download(url, request.method)
    content_type = headers.get("Content-Type") or "application/octet-stream"
    # the file is shown by the panel, never rendered by the browser as a page
    extra = [("Content-Disposition", "attachment"), ("X-Content-Type-Options", "nosniff")]
    location = headers.get("Location")
    if location and 300 <= status < 400:
        # a redirect is followed through /http_proxy/ again (and its checks)
        target = urlsplit(urljoin(url, location))
        proxied = f"{request.base_url}/http_proxy/{target.scheme}/{target.netloc}{target.path}"
        extra.append(("Location", proxied + (f"?{target.query}" if target.query else "")))
    return Response(body, 520 if status >= 500 else status, content_type, headers=extra)


# ---- schemas ------------------------------------------------------------------------------


def release_schema(app: ProxyApp, software_url: str) -> dict[str, Any]:
    """What the request form needs: software types, serialisation, self-contained schemas."""
    from slapos.slap.schema import SoftwareReleaseSchema

    releases: set[str] = app.read(known_releases)
    if urlsplit(software_url).scheme in ("http", "https"):
        # a URL typed in the request form: requesting it makes the node fetch it anyway
        releases.add(software_url)
    problems: list[str] = []
    documents: dict[str, Any] = {}

    def fetch(url: str) -> Any:
        if url not in documents:
            documents[url] = _fetch_json(url, releases)
        if isinstance(documents[url], SchemaUnavailable):
            raise documents[url]
        return documents[url]

    schema = SoftwareReleaseSchema(software_url, None, fetch=fetch)
    document = schema.software_schema()
    types = []
    if document is not None:
        for key, entry in (document.get("software-type") or {}).items():
            if not isinstance(entry, dict):
                continue
            typed = SoftwareReleaseSchema(software_url, key, fetch=fetch)
            typed._cache = schema._cache  # one download of each file for all types
            request_schema = typed.request_schema()
            if request_schema is not None:
                request_schema = bundle(request_schema, str(request_schema["$id"]), fetch)
            types.append(
                {
                    "key": key,
                    "software_type": entry.get("software-type") or key,
                    "title": entry.get("title") or key,
                    "description": entry.get("description") or "",
                    "shared": bool(entry.get("shared")),
                    "index": entry.get("index", 0),
                    "serialisation": typed.serialisation(),
                    "request_schema": request_schema,
                }
            )
            problems.extend(typed.problems)
    problems.extend(schema.problems)
    types.sort(key=lambda t: (t["index"] if isinstance(t["index"], int) else 0, t["key"]))
    return {
        "software_release_uri": software_url,
        "name": (document or {}).get("name") or "",
        "description": (document or {}).get("description") or "",
        "serialisation": schema.serialisation(),
        "software_type_list": types,
        "problem_list": list(dict.fromkeys(problems)),
    }


def _fetch_json(url: str, releases: set[str]) -> Any:
    """The JSON document at `url`, or the SchemaUnavailable saying why not (kept, so
    that a missing file is asked for once)."""
    if not url.endswith(".json"):
        return SchemaUnavailable(f"{url} is not read: schemas are .json files")
    release = url.removesuffix(".json")
    if not allowed(url, releases) and not (url.endswith(".json") and allowed(release, releases)):
        return SchemaUnavailable(f"{url} is not a file of a software release known to this proxy")
    try:
        return json.loads(read(url))
    except ProxyHTTPError as exc:
        return SchemaUnavailable(str(exc))
    except ValueError as exc:
        return SchemaUnavailable(f"{url} is not JSON: {exc}")


def _pointer(document: Any, fragment: str) -> Any:
    node = document
    for part in fragment.lstrip("/").split("/") if fragment.strip("/") else []:
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def bundle(schema: Any, base: str, fetch: Callable[[str], Any]) -> Any:
    """`schema` with every `$ref` replaced by its target (relative to `base`).

    A recursive schema is cut after MAX_DEPTH nested references, and the whole after
    MAX_REFS: the result is a form, it must stay small.
    """
    return _Bundler(fetch).expand(schema, base, 0)


class _Bundler:
    def __init__(self, fetch: Callable[[str], Any]) -> None:
        self.fetch = fetch
        self.left = MAX_REFS

    def expand(self, schema: Any, base: str, depth: int) -> Any:
        if isinstance(schema, list):
            return [self.expand(item, base, depth) for item in schema]
        if not isinstance(schema, dict):
            return schema
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return {
                k: v if k in _VALUES else self.expand(v, base, depth) for k, v in schema.items()
            }
        if depth >= MAX_DEPTH or self.left <= 0:
            return {"description": f"not expanded: {ref} (nested too deep)"}
        self.left -= 1
        target_url, _, fragment = urljoin(base, ref).partition("#")
        try:
            target = _pointer(self.fetch(target_url), fragment)
        except (SchemaUnavailable, LookupError, ValueError, TypeError) as exc:
            # a dangling $ref leaves an open field, not a broken form
            return {"description": f"cannot read {ref}: {exc}"}
        merged = dict(self.expand(target, target_url, depth + 1))
        merged.update({k: self.expand(v, base, depth) for k, v in schema.items() if k != "$ref"})
        return merged
