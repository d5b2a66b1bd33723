"""JSON-RPC methods the web panel reads (`slapos.*.WIP.*`, docs/panel.rst): one call per
page, with the fields a page shows, where the `v0` methods would need one call per row.

They are ours (1.26.1 has none of them but `compute_node_list`), so `WIP`: their answers
may still grow. Instances and software installations carry `status`: what the node last
reported (slapos.proxy.status: `{"state", "message", "time", "error", "error_time"}`,
times in ISO 8601 UTC), `null` when it has reported nothing yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from slapos.proxy import status as reports
from slapos.proxy.documents import shared_entries
from slapos.proxy.jsonrpc import (
    instance_guid,
    partition_json,
    shared_json,
)
from slapos.proxy.model import Forbidden
from slapos.proxy.service import Master
from slapos.slap.instance_xml import xml2dict

if TYPE_CHECKING:
    from slapos.proxy.app import ProxyApp
    from slapos.proxy.request import Request

#: search results past this many are cut (the answer says so)
SEARCH_LIMIT = 200
_HIDDEN = ("slave_title", "slap_software_type", "slave_reference")


class Reports:
    """The nodes' last reports, read once per computer for a whole answer."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self._by_computer: dict[str, dict[tuple[str, str], reports.Status]] = {}

    def _get(self, kind: str, computer: str, reference: str) -> reports.Status | None:
        if computer not in self._by_computer:
            found = reports.of_computer(self.master.store.conn, computer)
            self._by_computer[computer] = {(r.kind, r.reference): r for r in found}
        return self._by_computer[computer].get((kind, reference))

    def instance(self, row: Any) -> dict[str, Any] | None:
        """The report on the instance a partition row holds (not a former occupant's)."""
        found = self._get(reports.INSTANCE, row["computer_reference"], row["reference"])
        if found is None or found.title != (row["partition_reference"] or ""):
            return None
        return _status_json(found)

    def software(self, computer: str, url: str) -> dict[str, Any] | None:
        found = self._get(reports.SOFTWARE, computer, url)
        return _status_json(found) if found is not None else None


def _status_json(found: reports.Status) -> dict[str, Any]:
    return {
        "state": found.status,
        "message": found.message,
        "time": found.reported_at,
        "error": found.error,
        "error_time": found.error_at,
    }


def _worst(statuses: list[dict[str, Any] | None], titles: list[str]) -> dict[str, Any] | None:
    """A tree's status: its first failing instance's (named), else its root's."""
    for found, title in zip(statuses, titles, strict=True):
        if found is not None and found["state"] == reports.ERROR:
            return {**found, "instance": title}
    return statuses[0] if statuses else None


def _shared_title(reference: str) -> tuple[str, str]:
    requested_by, _, title = reference.partition("_")
    return title, requested_by


def _tree_row(row: Any, counts: dict[str, int], status: dict[str, Any] | None) -> dict[str, Any]:
    title = row["partition_reference"]
    return {
        "title": title,
        "instance_guid": instance_guid(title, "", False),
        "software_release_uri": row["software_release"],
        "software_type": row["software_type"],
        "state": row["requested_state"],
        "shared": False,
        "computer_guid": row["computer_reference"],
        "compute_partition_id": row["reference"],
        "instance_count": 1 + counts.get(title, 0),
        "status": status,
    }


def m_tree_list(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    def run(m: Master) -> Any:
        busy = m.store.partitions(busy_only=True)
        found = Reports(m)
        counts: dict[str, int] = {}
        members: dict[str, list[Any]] = {}  # tree title -> its partitions, root first
        for row in busy:
            tree = row["requested_by"] or row["partition_reference"]
            members.setdefault(tree, [])
            if row["requested_by"]:
                counts[row["requested_by"]] = counts.get(row["requested_by"], 0) + 1
                members[tree].append(row)
            else:
                members[tree].insert(0, row)
        for shared in m.store.shared_list():
            title, requested_by = _shared_title(shared["reference"])
            if requested_by:
                counts[requested_by] = counts.get(requested_by, 0) + 1
        result = []
        for row in busy:
            if row["requested_by"]:
                continue
            tree = members[row["partition_reference"]]
            titles = [r["partition_reference"] for r in tree]
            status = _worst([found.instance(r) for r in tree], titles)
            result.append(_tree_row(row, counts, status))
        hosts = {(row["computer_reference"], row["reference"]): row for row in busy}
        for shared in m.store.shared_list():
            title, requested_by = _shared_title(shared["reference"])
            host = hosts.get((shared["computer_reference"], shared["hosted_by"]))
            if requested_by or host is None:
                continue
            result.append(
                {
                    "title": title,
                    "instance_guid": instance_guid(title, "", True),
                    "software_release_uri": host["software_release"],
                    "software_type": host["software_type"],
                    "state": "started",
                    "shared": True,
                    "computer_guid": host["computer_reference"],
                    "compute_partition_id": host["reference"],
                    "instance_count": 1,
                    "status": None,
                }
            )
        return {"result_list": result}

    return app.read(run)


def _hosted(master: Master, row: Any) -> list[dict[str, Any]]:
    """The shared instances a partition hosts, with their connection parameters."""
    hosted = []
    for entry in shared_entries(row["slave_instance_list"]):
        reference = str(entry.get("slave_title", ""))
        title, requested_by = _shared_title(reference)
        shared = master.store.shared(reference, row["computer_reference"])
        hosted.append(
            {
                "title": title,
                "instance_guid": instance_guid(title, requested_by, True),
                "root_instance_title": requested_by or title,
                "software_type": entry.get("slap_software_type"),
                "parameters": {k: v for k, v in entry.items() if k not in _HIDDEN},
                "connection_parameters": xml2dict(shared["connection_xml"]) if shared else {},
            }
        )
    return hosted


def m_tree_instances(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    title = body["title"]

    def run(m: Master) -> Any:
        result = []
        found = Reports(m)
        for row in m.store.tree_partitions(title):
            document = partition_json(m, row)
            document["requested_by"] = row["requester_id"]
            document["hosted_shared_list"] = _hosted(m, row)
            document["status"] = found.instance(row)
            result.append(document)
        for shared in m.store.shared_list():
            name, requested_by = _shared_title(shared["reference"])
            if (requested_by or name) != title or (not requested_by and result):
                continue
            try:
                document = shared_json(m, shared)
            except Forbidden:  # its host is gone: nothing to show but its name
                continue
            document["requested_by"] = shared["requester_id"]
            document["hosted_shared_list"] = []
            document["status"] = None
            result.append(document)
        if not result:
            raise Forbidden(f"No instance tree {title} found.")
        return {"title": title, "result_list": result}

    return app.read(run)


def m_compute_node(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    computer_id = body["computer_guid"]

    def run(m: Master) -> Any:
        computer = m.store.computer(computer_id)
        if computer is None:
            raise Forbidden(f"{computer_id} is not registered.")
        addresses = m.store.addresses_by_partition(computer_id)
        found = Reports(m)
        partitions = []
        for row in m.store.partitions(computer_id):
            entry: dict[str, Any] = {
                "compute_partition_id": row["reference"],
                "slap_state": "free",
                "ip_list": [list(a) for a in addresses.get(row["reference"], [])],
            }
            if row["slap_state"] != "free":
                title = row["partition_reference"]
                entry.update(
                    slap_state="busy",
                    title=title,
                    instance_guid=instance_guid(title, row["requested_by"], False),
                    root_instance_title=row["requested_by"] or title,
                    software_release_uri=row["software_release"],
                    software_type=row["software_type"],
                    state=row["requested_state"],
                    shared_count=len(shared_entries(row["slave_instance_list"])),
                    status=found.instance(row),
                )
            partitions.append(entry)
        software = [
            {
                "software_release_uri": r["url"],
                "state": r["requested_state"],
                "status": found.software(computer_id, r["url"]),
            }
            for r in m.store.software_list(computer_id)
        ]
        return {
            "computer_guid": computer_id,
            "address": computer["address"],
            "netmask": computer["netmask"],
            "partition_list": partitions,
            "software_installation_list": software,
        }

    return app.read(run)


def m_software_release_list(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    """Releases supplied to any computer, then those only used by instances."""

    def run(m: Master) -> Any:
        seen: dict[str, dict[str, Any]] = {}
        for computer in m.store.computers():
            for r in m.store.software_list(computer["reference"]):
                entry = seen.setdefault(
                    r["url"], {"software_release_uri": r["url"], "computer_list": []}
                )
                entry["computer_list"].append(
                    {"computer_guid": computer["reference"], "state": r["requested_state"]}
                )
        for row in m.store.partitions(busy_only=True):
            url = row["software_release"]
            if url and url not in seen:
                seen[url] = {"software_release_uri": url, "computer_list": []}
        return {"result_list": list(seen.values())}

    return app.read(run)


def _flatten(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """(key path, text) pairs of a connection value; `_` JSON is looked into."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{key}[{i}]")
    elif value is not None:
        yield key, str(value)


def _connection_items(connection_xml: str | None) -> Iterator[tuple[str, str]]:
    parameters: dict[str, Any] = dict(xml2dict(connection_xml))
    raw = parameters.get("_")
    if len(parameters) == 1 and isinstance(raw, str):
        try:
            yield from _flatten(json.loads(raw), "")
            return
        except ValueError:
            pass  # not JSON: searched as the plain value it is
    yield from _flatten(parameters, "")


def m_search(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    needle = body["value"].strip().lower()
    if not needle:
        return {"result_list": [], "truncated": False}

    def run(m: Master) -> Any:
        found: list[dict[str, Any]] = []
        candidates: list[tuple[str, str, bool, str | None]] = [
            (row["partition_reference"], row["requested_by"], False, row["connection_xml"])
            for row in m.store.partitions(busy_only=True)
        ]
        for row in m.store.shared_list():
            title, requested_by = _shared_title(row["reference"])
            candidates.append((title, requested_by, True, row["connection_xml"]))
        for title, requested_by, shared, connection_xml in candidates:
            for key, value in _connection_items(connection_xml):
                if needle in value.lower():
                    found.append(
                        {
                            "title": title,
                            "instance_guid": instance_guid(title, requested_by, shared),
                            "root_instance_title": requested_by or title,
                            "shared": shared,
                            "key": key,
                            "value": value,
                        }
                    )
                    if len(found) > SEARCH_LIMIT:
                        return {"result_list": found[:SEARCH_LIMIT], "truncated": True}
        return {"result_list": found, "truncated": False}

    return app.read(run)


def m_schema(app: ProxyApp, request: Request, body: dict[str, Any]) -> Any:
    from slapos.proxy.release_files import release_schema

    return release_schema(app, body["software_release_uri"])


METHODS = {
    "slapos.allDocs.WIP.instance_tree_list": m_tree_list,
    "slapos.allDocs.WIP.instance_tree_instance_list": m_tree_instances,
    "slapos.get.WIP.compute_node": m_compute_node,
    "slapos.allDocs.WIP.software_release_list": m_software_release_list,
    "slapos.allDocs.WIP.connection_parameter_search": m_search,
    "slapos.get.WIP.software_release_schema": m_schema,
}
