"""HATEOAS subset (protocol.md §7): what `slapos service list/info` and
`slapos computer list/info/token` read, under `/hateoas`.

Root document with `raw_search`, `traverse` and `self` links; `mode=search` understands
the queries upstream's client sends; `mode=traverse` redirects to the document.
Differences from 1.26.1: search rows carry only `title`, `url_string` and `relative_url`
(not raw database columns), and the computer token link answers 410 with a reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

from slapos.proxy import status
from slapos.proxy.documents import shared_entries
from slapos.proxy.model import BadRequest, NotFound
from slapos.proxy.service import Master
from slapos.slap.instance_xml import dict2xml

if TYPE_CHECKING:
    from slapos.proxy.app import ProxyApp, Response
    from slapos.proxy.request import Request

SERVICE_LIST = 'portal_type:"Instance Tree" AND validation_state:validated'
SERVICE_INFO = SERVICE_LIST + " AND title:="
COMPUTER_LIST = 'portal_type:"Compute Node" AND validation_state:validated'
COMPUTER_INFO = COMPUTER_LIST + " AND reference:="
_QUOTED = re.compile(r'"((?:\\.|[^\\"])*)"')
#: the rows a search answers: (master, URL prefix, a title or reference; None: all)
Rows = Callable[[Master, str, str | None], list[dict[str, Any]]]


def _json(document: Any, status: int = 200) -> Response:
    from slapos.proxy.app import Response

    return Response(json.dumps(document), status, "application/json")


def _prefix(request: Request) -> str:
    return (request.header("X-Forwarded-Prefix") or "").split(",")[-1].strip().rstrip("/")


def dispatch(app: ProxyApp, request: Request) -> Response:
    from slapos.proxy.app import redirect

    if request.method not in ("GET", "HEAD"):
        raise BadRequest(f"method {request.method} not supported on {request.path}")
    path = request.path
    if path == "/hateoas":
        query = request.environ.get("QUERY_STRING")
        return redirect(f"{request.base_url}/hateoas/" + (f"?{query}" if query else ""), 308)
    if path == "/hateoas/":
        mode = request.query.get("mode")
        if mode is None:
            return _json(_root(request))
        if mode == "search":
            return _json({"_embedded": {"contents": _search(app, request)}})
        if mode == "traverse":
            target = request.query.get("relative_url", "")
            if not target.startswith(f"{_prefix(request)}/hateoas/"):
                raise BadRequest(f"cannot traverse to {target!r}")
            return redirect(f"{request.scheme}://{request.host}{target}")
        raise BadRequest(f"Unhandled mode: {mode}")
    kind, _, name = path[len("/hateoas/") :].partition("/")
    name = unquote(name)
    if kind == "partitions" and name:
        return _json(app.read(lambda m: _partition_document(m, name)))
    if kind == "shared" and name:
        return _json(app.read(lambda m: _shared_document(m, name)))
    if kind == "computers" and name:
        return _json(app.read(lambda m: _computer_document(m, name)))
    if kind == "computer_module" and name == "Base_getComputerToken":
        return _json(
            {"message": "computer tokens are not supported by the stand-alone master: "
             "point the node's master_url at the proxy instead"},
            410,
        )  # fmt: skip
    raise NotFound(f"no HATEOAS document at {path}")


def _root(request: Request) -> dict[str, Any]:
    base = f"{request.base_url}/hateoas/"
    search = urlencode({"mode": "search"}) + "&query={query}&select_list={select_list}"
    traverse = urlencode({"mode": "traverse"}) + "&relative_url={relative_url}&view={view}"
    return {
        "_links": {
            "raw_search": {"href": f"{base}?{search}"},
            "traverse": {"href": f"{base}?{traverse}"},
            "self": {"href": f"{request.base_url}/hateoas"},
        }
    }


def _title_argument(query: str, prefix: str) -> str | None:
    text = query[len(prefix) :]
    match = _QUOTED.fullmatch(text)
    return match.group(1) if match else None


def _search(app: ProxyApp, request: Request) -> list[dict[str, Any]]:
    rows, name = _parse_search(request.query.get("query", ""))
    prefix = _prefix(request)
    return app.read(lambda m: rows(m, prefix, name))  # type: ignore[no-any-return]


def _parse_search(query: str) -> tuple[Rows, str | None]:
    """Which rows a search query asks for, and of which title or reference (None: all)."""
    for rows, every, one in (
        (_services, SERVICE_LIST, SERVICE_INFO),
        (_computers, COMPUTER_LIST, COMPUTER_INFO),
    ):
        if query == every:
            return rows, None
        if query.startswith(one):
            name = _title_argument(query, one)
            if name is not None:
                return rows, name
    raise BadRequest(f"Unhandled query: {query}")


def _services(master: Master, prefix: str, title: str | None) -> list[dict[str, Any]]:
    rows = [
        {
            "title": row["partition_reference"],
            "url_string": row["software_release"],
            "relative_url": _url(prefix, "partitions", row["partition_reference"]),
        }
        for row in master.store.root_partitions(title)
    ]
    if title is not None and rows:
        return rows
    for shared, _entry, host in _root_shared(master, title):
        name = shared["reference"][1:]
        rows.append(
            {
                "title": name,
                "url_string": host["software_release"],
                "relative_url": _url(prefix, "shared", name),
            }
        )
    return rows


def _url(prefix: str, kind: str, name: str) -> str:
    return f"{prefix}/hateoas/{kind}/{quote(name, safe='')}"


def _root_shared(master: Master, title: str | None) -> list[tuple[Any, dict[str, Any], Any]]:
    """Shared instances requested by a user (reference `_<title>`) and alive on a host."""
    found = []
    for shared in master.store.shared_list():
        reference = shared["reference"]
        if not reference.startswith("_") or (title is not None and reference != "_" + title):
            continue
        host = master.store.partition(shared["hosted_by"], shared["computer_reference"])
        if host is None:
            continue
        for entry in shared_entries(host["slave_instance_list"]):
            if entry.get("slave_reference") == reference:
                found.append((shared, entry, host))
                break
    return found


def _computers(master: Master, prefix: str, reference: str | None) -> list[dict[str, Any]]:
    return [
        {
            "reference": row["reference"],
            "title": row["reference"],
            "relative_url": _url(prefix, "computers", row["reference"]),
        }
        for row in master.store.computers(reference)
    ]


def _field(kind: str, key: str, default: Any) -> dict[str, Any]:
    return {"type": kind, "key": key, "default": default}


def _service_document(**kw: Any) -> dict[str, Any]:
    view = {"form_id": _field("StringField", "form_id", "InstanceTree_viewAsHateoas")}
    for name, value in (
        ("reference", kw["reference"]),
        ("slap_state", kw["requested_state"]),
        ("text_content", kw["xml"]),
        ("connection_parameter_list", kw["connection_xml"]),
        ("url_string", kw["software_release"]),
        ("source_reference", kw["software_type"]),
    ):
        view[f"my_{name}"] = _field("StringField", f"field_my_{name}", value)
    view["my_root_slave"] = _field("IntegerField", "field_my_root_slave", kw["shared"])
    return {"_embedded": {"_view": view}, "_links": {"type": {"name": "Instance Tree"}}}


def _partition_document(master: Master, title: str) -> dict[str, Any]:
    rows = master.store.root_partitions(title) or master.store.instances_titled(title)
    if not rows:
        raise NotFound(f"no instance tree {title!r}")
    row = rows[0]
    document = _service_document(
        reference=row["partition_reference"],
        requested_state=row["requested_state"],
        xml=row["xml"],
        connection_xml=row["connection_xml"],
        software_release=row["software_release"],
        software_type=row["software_type"],
        shared=0,
    )
    document["news"] = {"instance": _tree_news(master, row)}
    return document


def _tree_news(master: Master, root: Any) -> list[dict[str, Any]]:
    """What the nodes last reported for each instance of the tree, as a master's news.

    Upstream's proxy sends no news (`service info` says "unsupported"); a real master
    sends one entry per instance, `#access ...` or `#error ...`, which we keep too."""
    entries = []
    for row in master.store.tree_partitions(root["requested_by"] or root["partition_reference"]):
        found = status.of_instance(master.store.conn, row["computer_reference"], row["reference"])
        if found is not None and found.title == row["partition_reference"]:
            entries.append(status.news_entry(found))
    return entries


def _shared_document(master: Master, title: str) -> dict[str, Any]:
    found = _root_shared(master, title)
    if not found:
        raise NotFound(f"no shared instance {title!r}")
    shared, entry, host = found[0]
    parameters = {
        k: v
        for k, v in entry.items()
        if k not in ("slave_title", "slave_reference", "slap_software_type")
    }
    return _service_document(
        reference=title,
        requested_state="unused",
        xml=dict2xml(parameters),
        connection_xml=shared["connection_xml"],
        software_release=host["software_release"],
        software_type=entry.get("slap_software_type"),
        shared=1,
    )


def _computer_document(master: Master, reference: str) -> dict[str, Any]:
    if master.store.computer(reference) is None:
        raise NotFound(f"no computer {reference!r}")
    return {
        "_embedded": {
            "_view": {
                "form_id": _field("StringField", "computer", reference),
                "my_reference": _field("StringField", "reference", reference),
                "my_title": _field("StringField", "reference", reference),
            }
        },
        "_links": {"type": {"name": "Computer"}},
    }
