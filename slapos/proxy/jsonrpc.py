"""JSON-RPC `slapos.*.v0.*` (protocol.md §6): POST a JSON object, get a JSON object.

Input is checked against a per-method description (required keys, types, enums, no
unknown keys); violations are 400 with the validator-style message. Business errors
(unknown computer or instance, allocation failure) are 403. Errors are JSON
`{"status", "type", "title"}`. Instance ids follow upstream's proxy:
`<title>___<tree root title>___<0|1 shared>`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slapos.proxy import status
from slapos.proxy.documents import shared_entries
from slapos.proxy.jsonrpc_schema import InvalidInput, validate
from slapos.proxy.model import Forbidden, InstanceRequest, ProxyHTTPError, Requester, RequestResult
from slapos.proxy.service import Master
from slapos.slap.instance_xml import dict2xml, xml2dict
from slapos.slap.marshal import WireObject

if TYPE_CHECKING:
    from slapos.proxy.app import Handler, ProxyApp, Response
    from slapos.proxy.request import Request

_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 406: "Not Acceptable",
            405: "Method Not Allowed", 408: "Request Timeout", 500: "Internal Server Error",
            502: "Bad Gateway", 523: "Unknown Error"}  # fmt: skip


def _json(document: Any, status: int = 200) -> Response:
    from slapos.proxy.app import Response

    return Response(json.dumps(document), status, "application/json")


def _error(status: int, title: str) -> Response:
    return _json(
        {"status": status, "type": _REASONS.get(status, "Unknown Error"), "title": title}, status
    )


def json_error(status: int, title: str) -> Response:
    """A JSON-RPC error answer, for errors raised before a method runs (identity)."""
    return _error(status, title)


def _success(title: str) -> dict[str, str]:
    return {"type": "success", "title": title}


# ---- instance ids -----------------------------------------------------------------------


def instance_guid(title: str, requested_by: str, shared: bool) -> str:
    return f"{title}___{requested_by}___{int(shared)}"


def parse_guid(guid: str) -> tuple[str, str, bool]:
    parts = guid.split("___", 2)
    try:
        if len(parts) != 3:
            raise ValueError
        return parts[0], parts[1], bool(int(parts[2]))
    except ValueError:
        raise Forbidden(f"instance_guid {guid} not handled.") from None


def _shared_title(reference: str) -> tuple[str, str]:
    requested_by, _, title = reference.partition("_")
    return title, requested_by


# ---- documents --------------------------------------------------------------------------


def partition_json(master: Master, row: Any) -> dict[str, Any]:
    addresses = master.store.addresses(row["reference"], row["computer_reference"])
    return {
        "title": row["partition_reference"],
        "instance_guid": instance_guid(row["partition_reference"], row["requested_by"], False),
        "software_release_uri": row["software_release"],
        "software_type": row["software_type"],
        "state": row["requested_state"],
        "connection_parameters": xml2dict(row["connection_xml"]),
        "parameters": xml2dict(row["xml"]),
        "shared": False,
        "root_instance_title": row["requested_by"] or row["partition_reference"],
        "ip_list": [list(a) for a in addresses],
        "full_ip_list": [],
        "sla_parameters": {},
        "computer_guid": row["computer_reference"],
        "compute_partition_id": row["reference"],
        "processing_timestamp": int(row["timestamp"] or 0),
        "access_status_message": status.access_status_message(_status_of(master, row)),
    }


def _status_of(master: Master, row: Any) -> status.Status | None:
    """The last report about the instance on this partition (not a former occupant's)."""
    found = status.of_instance(master.store.conn, row["computer_reference"], row["reference"])
    if found is None or found.title != (row["partition_reference"] or ""):
        return None
    return found


def shared_json(master: Master, shared: Any) -> dict[str, Any]:
    host = master.store.partition(shared["hosted_by"], shared["computer_reference"])
    title, requested_by = _shared_title(shared["reference"])
    entry = None
    if host is not None:
        for candidate in shared_entries(host["slave_instance_list"]):
            if candidate.get("slave_title") == shared["reference"]:
                entry = candidate
                break
    if host is None or entry is None:
        raise Forbidden(f"No partition hosting {instance_guid(title, requested_by, True)} found.")
    hidden = ("slave_title", "slap_software_type", "slave_reference")
    return {
        "title": title,
        "instance_guid": instance_guid(title, requested_by, True),
        "software_release_uri": host["software_release"],
        "software_type": host["software_type"],
        "state": "started",
        "connection_parameters": xml2dict(shared["connection_xml"]),
        "parameters": {k: v for k, v in entry.items() if k not in hidden},
        "shared": True,
        "root_instance_title": requested_by or title,
        "ip_list": [],
        "full_ip_list": [],
        "sla_parameters": {},
        "computer_guid": host["computer_reference"],
        "compute_partition_id": host["reference"],
        "processing_timestamp": int(host["timestamp"] or 0),
        "access_status_message": "",
    }


def _request_json(result: RequestResult, body: dict[str, Any], requested_by: str) -> dict[str, Any]:
    title, shared = body["title"], bool(body.get("shared", False))
    wire: WireObject = result.wire
    state = wire.state
    if result.kind in ("instance", "shared"):
        parameters = dict(state["_parameter_dict"])
        timestamp = parameters.pop("timestamp", 0) if not shared else 0
        return {
            "title": title,
            "instance_guid": instance_guid(title, requested_by, shared),
            "software_release_uri": state["slap_software_release_url"],
            "software_type": state["slap_software_type"],
            "state": "started" if shared else state["_requested_state"],
            "connection_parameters": state["_connection_dict"],
            "parameters": parameters,
            "shared": shared,
            "root_instance_title": requested_by or title,
            "ip_list": [list(a) for a in state["ip_list"]],
            "full_ip_list": [],
            "sla_parameters": {},
            "computer_guid": state["slap_computer_id"],
            "compute_partition_id": state["slap_computer_partition_id"],
            "processing_timestamp": int(float(timestamp)),
            "access_status_message": "",
        }
    return {
        "title": title,
        "instance_guid": instance_guid(title, requested_by, shared),
        "software_release_uri": body["software_release_uri"],
        "software_type": body["software_type"],
        "state": body.get("state", "started"),
        "connection_parameters": state.get("_connection_dict") or {},
        "parameters": body.get("parameters") or {},
        "shared": shared,
        "root_instance_title": requested_by or title,
        "ip_list": [],
        "full_ip_list": [],
        "sla_parameters": {},
        "computer_guid": state.get("_computer_id"),
        "compute_partition_id": state.get("_partition_id"),
        "processing_timestamp": 0,
        "access_status_message": "",
    }


# ---- methods ------------------------------------------------------------------------------

Method = Callable[["ProxyApp", "Request", dict[str, Any]], Any]


def _registered(master: Master, computer_id: str) -> None:
    if master.store.computer(computer_id) is None:
        raise Forbidden(f"{computer_id} is not registered.")


def m_hateoas_url(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    return {"hateoas_url": f"{request.base_url}/hateoas/"}


def m_instance_tree_list(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    def run(m: Master) -> Any:
        titles = [{"title": row["partition_reference"]} for row in m.store.root_partitions()]
        titles += [
            {"title": _shared_title(row["reference"])[0]}
            for row in m.store.shared_list()
            if row["reference"].startswith("_")
        ]
        return {"result_list": titles}

    return app.read(run)


def m_compute_node_list(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    return app.read(
        lambda m: {"result_list": [{"computer_guid": r["reference"]} for r in m.store.computers()]}
    )


def m_instance_tree(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    title = body["title"]

    def run(m: Master) -> Any:
        roots = m.store.root_partitions(title)
        shared = m.store.shared("_" + title)
        if len(roots) == 1 and shared is None:
            return partition_json(m, roots[0])
        if not roots and shared is not None:
            return shared_json(m, shared)
        raise Forbidden(f"No instance tree {title} found.")

    return app.read(run)


def m_post_instance(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    spec = InstanceRequest(
        title=body["title"],
        software_release=body["software_release_uri"],
        software_type=body["software_type"],
        parameters=dict(body.get("parameters") or {}),
        filter_kw=dict(body.get("sla_parameters") or {}),
        state=body.get("state", "started"),
        shared=bool(body.get("shared", False)),
    )

    def who(m: Master) -> Requester:
        header = request.partition_header()
        if header is None:
            return m.requester(None, None, strict=False)
        return m.requester(header[0], header[1], strict=True)

    try:
        result = app.request_instance(request, spec, who)
    except ProxyHTTPError as exc:
        if exc.status == 404:  # allocation failures are 403 in JSON-RPC
            raise Forbidden(str(exc)) from None
        raise
    requested_by = result.requested_by
    return _request_json(result, body, requested_by)


def m_get_instance(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    title, requested_by, shared = parse_guid(body["instance_guid"])

    def run(m: Master) -> Any:
        if shared:
            row = m.store.shared(f"{requested_by}_{title}")
            if row is None:
                raise Forbidden(f"No shared instance {body['instance_guid']} found.")
            return shared_json(m, row)
        row = m.store.instance(title, requested_by)
        if row is None:
            raise Forbidden(f"No software instance {body['instance_guid']} found.")
        return partition_json(m, row)

    return app.read(run)


def m_compute_partition(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    def run(m: Master) -> Any:
        row = m.store.partition(body["compute_partition_id"], body["computer_guid"])
        if row is None or not row["partition_reference"]:
            raise Forbidden(f"No instance on partition {body['compute_partition_id']} found.")
        return partition_json(m, row)

    return app.read(run)


def m_compute_node_instances(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    computer_id = body["computer_guid"]

    def run(m: Master) -> Any:
        _registered(m, computer_id)
        return {
            "result_list": [
                {
                    "title": row["partition_reference"],
                    "instance_guid": instance_guid(
                        row["partition_reference"], row["requested_by"], False
                    ),
                    "state": row["requested_state"],
                    "compute_partition_id": row["reference"],
                    "software_release_uri": row["software_release"],
                }
                for row in m.store.partitions(computer_id, busy_only=True)
            ]
        }

    return app.read(run)


def m_instance_node_instances(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    title, requested_by, shared = parse_guid(body["instance_guid"])

    def run(m: Master) -> Any:
        row = None if shared else m.store.instance(title, requested_by)
        if row is None:
            raise Forbidden(f"No software instance {body['instance_guid']} found.")
        result = []
        hidden = ("slave_title", "slap_software_type", "slave_reference")
        for entry in shared_entries(row["slave_instance_list"]):
            name, asked_by = _shared_title(str(entry.get("slave_title", "")))
            result.append(
                {
                    "title": name,
                    "instance_guid": instance_guid(name, asked_by, True),
                    "software_type": entry.get("slap_software_type"),
                    "state": "started",
                    "parameters": {k: v for k, v in entry.items() if k not in hidden},
                    "compute_partition_id": row["reference"],
                }
            )
        return {"result_list": result}

    return app.read(run)


def m_installations(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    computer_id = body["computer_guid"]

    def run(m: Master) -> Any:
        _registered(m, computer_id)
        return {
            "result_list": [
                {"software_release_uri": r["url"], "state": r["requested_state"]}
                for r in m.store.software_list(computer_id)
            ]
        }

    return app.read(run)


def m_supply(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    url, state = body["software_release_uri"], body.get("state", "available")
    app.write(request, lambda m: m.supply(body["computer_guid"], url, state))
    return _success(f"Supplied {url} to be {state}")


def m_installation_state(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    computer_id, url = body["computer_guid"], body["software_release_uri"]
    if body["reported_state"] != "destroyed":
        _keep_software(app, request, computer_id, url, body["reported_state"], "")
        return _success("Ignored")

    def remove(m: Master) -> None:
        m.store.remove_software(computer_id, url)
        status.forget(m.store.conn, status.SOFTWARE, computer_id, url)

    app.write(request, remove)
    return _success("Destroyed")


def _keep_software(
    app: ProxyApp, request: Request, computer_id: str, url: str, state: str, message: str
) -> None:
    def keep(m: Master) -> None:
        _registered(m, computer_id)
        status.record(
            m.store.conn, status.SOFTWARE, computer_id, url, state, now=m.now(), message=message
        )

    app.write(request, keep, report=True)


def _keep_instance(app: ProxyApp, request: Request, guid: str, state: str, message: str) -> None:
    title, requested_by, shared = parse_guid(guid)
    if shared:
        return  # a shared instance has no partition of its own: its host reports

    def keep(m: Master) -> None:
        row = m.store.instance(title, requested_by)
        if row is None:
            raise Forbidden(f"No software instance {guid} found.")
        status.record(
            m.store.conn,
            status.INSTANCE,
            row["computer_reference"],
            row["reference"],
            state,
            now=m.now(),
            message=message,
            title=title,
        )

    app.write(request, keep, report=True)


def m_installation_error(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    computer_id, url = body["computer_guid"], body["software_release_uri"]
    _keep_software(app, request, computer_id, url, status.ERROR, body["message"])
    return _success("Ignored")


def m_instance_error(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    _keep_instance(app, request, body["instance_guid"], status.ERROR, body["message"])
    return _success("Ignored")


def m_ignored(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    return _success("Ignored")


def m_instance_state(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    if body["reported_state"] != "destroyed":
        _keep_instance(app, request, body["instance_guid"], body["reported_state"], "")
        return _success("Ignored")
    title, requested_by, shared = parse_guid(body["instance_guid"])
    if shared:
        return _success("Ignored")

    def run(m: Master) -> Any:
        row = m.store.instance(title, requested_by)
        if row is None:
            raise Forbidden(f"No software instance {body['instance_guid']} found.")
        reason = m.destroyed(row["reference"], row["computer_reference"])
        if not reason:
            status.forget(
                m.store.conn, status.INSTANCE, row["computer_reference"], row["reference"]
            )
        return reason

    reason = app.write(request, run)
    if reason:
        raise Forbidden(reason)
    return _success("Destroyed")


def m_connection(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    title, requested_by, shared = parse_guid(body["instance_guid"])
    parameters = body["connection_parameter_dict"]
    if shared:
        xml = dict2xml(parameters)
        app.write(request, lambda m: m.publish_shared(f"{requested_by}_{title}", xml))
    else:
        app.write(request, lambda m: m.publish_instance(title, requested_by, parameters))
    return _success("Updated")


def m_bang(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    title, requested_by, shared = parse_guid(body["instance_guid"])
    if shared:
        raise Forbidden("NotImplemented")
    app.write(request, lambda m: m.bang_instance(title, requested_by))
    return _success("Bang handled")


def m_title(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    title, requested_by, shared = parse_guid(body["instance_guid"])
    if shared:
        raise Forbidden("NotImplemented")

    def run(m: Master) -> None:
        row = m.store.instance(title, requested_by)
        if row is None:
            raise Forbidden(f"No software instance {body['instance_guid']} found.")
        m.store.rename(row["reference"], row["computer_reference"], body["title"])

    app.write(request, run)
    return _success("Renamed")


def m_empty_certificate(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    return {"key": "", "certificate": ""}


def m_format(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    partitions = []
    for entry in body["compute_partition_list"]:
        partition_id = entry["partition_id"]
        addresses = [
            (ip.get("network-interface") or partition_id, ip["ip-address"], ip.get("netmask"))
            for ip in entry.get("ip_list") or []
        ]
        partitions.append((partition_id, addresses))
    app.write(request, lambda m: m.format(body["computer_guid"], partitions))
    return _success("Formatted")


def m_status(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    """What the computer's node last reported, per instance and per installation.

    `text` stays a one-line summary (the schema's only key); the lists are ours."""
    computer_id = body["computer_guid"]

    def run(m: Master) -> Any:
        _registered(m, computer_id)
        found = status.of_computer(m.store.conn, computer_id)
        current = {
            r["reference"]: r["partition_reference"] or "" for r in m.store.partitions(computer_id)
        }
        instances = [
            s.to_dict()
            for s in found
            if s.kind == status.INSTANCE and current.get(s.reference) == s.title
        ]
        software = [s.to_dict() for s in found if s.kind == status.SOFTWARE]
        failing = sum(1 for s in [*instances, *software] if s["status"] == status.ERROR)
        n, k = len(instances), len(software)
        text = f"{n} instance{'s' * (n != 1)} and {k} installation{'s' * (k != 1)} reported"
        return {
            "text": f"{text}, {failing} failing" if failing else text,
            "instance_list": instances,
            "software_installation_list": software,
        }

    return app.read(run)


METHODS: dict[str, Method] = {
    "slapos.get.v0.hateoas_url": m_hateoas_url,
    "slapos.allDocs.v0.instance_tree_list": m_instance_tree_list,
    "slapos.allDocs.WIP.compute_node_list": m_compute_node_list,
    "slapos.get.v0.instance_tree": m_instance_tree,
    "slapos.post.v0.software_instance": m_post_instance,
    "slapos.get.v0.software_instance": m_get_instance,
    "slapos.get.v0.compute_partition": m_compute_partition,
    "slapos.allDocs.v0.compute_node_instance_list": m_compute_node_instances,
    "slapos.allDocs.v0.instance_node_instance_list": m_instance_node_instances,
    "slapos.allDocs.v0.compute_node_software_installation_list": m_installations,
    "slapos.post.v0.software_installation": m_supply,
    "slapos.put.v0.software_installation_reported_state": m_installation_state,
    "slapos.put.v0.software_installation_error": m_installation_error,
    "slapos.put.v0.software_instance_reported_state": m_instance_state,
    "slapos.put.v0.software_instance_error": m_instance_error,
    "slapos.put.v0.software_instance_connection_parameter": m_connection,
    "slapos.put.v0.software_instance_bang": m_bang,
    "slapos.put.v0.software_instance_title": m_title,
    "slapos.get.v0.software_instance_certificate": m_empty_certificate,
    "slapos.put.v0.compute_node_format": m_format,
    "slapos.put.v0.compute_node_bang": m_ignored,
    "slapos.post.v0.compute_node_usage": m_ignored,
    "slapos.get.v0.compute_node_status": m_status,
    "slapos.post.v0.compute_node_certificate": m_empty_certificate,
    "slapos.remove.v0.compute_node_certificate": m_ignored,
}


def _accepts_json(request: Request) -> bool:
    accept = request.header("Accept")
    if not accept:
        return True
    for item in accept.split(","):
        kind = item.split(";")[0].strip().lower()
        if kind in ("application/json", "application/*", "*/*"):
            return True
    return False


def _handler(method: str, function: Method) -> Handler:
    def handle(app: ProxyApp, request: Request) -> Response:
        if not _accepts_json(request):
            return _error(406, "only application/json answers are available")
        try:
            try:
                body = json.loads(request.body() or b"null")
            except ValueError as exc:
                raise InvalidInput(f"body is not JSON: {exc}") from None
            return _json(function(app, request, validate(method, body)))
        except ProxyHTTPError as exc:
            return _error(exc.status, " ".join(str(exc).split()))

    return handle


def routes() -> dict[str, tuple[frozenset[str], Handler]]:
    from slapos.proxy.jsonrpc_wip import METHODS as PANEL_METHODS

    methods = {**METHODS, **PANEL_METHODS}
    return {f"/{name}": (frozenset({"POST"}), _handler(name, f)) for name, f in methods.items()}
