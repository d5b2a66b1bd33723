"""Input descriptions of the JSON-RPC methods and their validation (protocol.md §6).

Messages follow jsonschema's wording ("'title' is a required property", "Additional
properties are not allowed ('x' was unexpected)") so that answers match 1.26.1's proxy,
without importing jsonschema (5 MiB of resident memory) into the server.
"""

from __future__ import annotations

from typing import Any

from slapos.proxy.model import ProxyHTTPError


class InvalidInput(ProxyHTTPError):
    status = 400


S, OBJ, B, A = "string", "object", "boolean", "array"
#: method -> {field: (type, required, enum, max length)}
SCHEMAS: dict[str, dict[str, tuple[str, bool, tuple[str, ...] | None, int | None]]] = {
    "slapos.get.v0.hateoas_url": {},
    "slapos.allDocs.v0.instance_tree_list": {},
    "slapos.allDocs.WIP.compute_node_list": {},
    "slapos.get.v0.instance_tree": {"title": (S, True, None, 200)},
    "slapos.post.v0.software_instance": {
        "title": (S, True, None, 200),
        "software_release_uri": (S, True, None, None),
        "software_type": (S, True, None, None),
        "parameters": (OBJ, False, None, None),
        "state": (S, False, ("started", "stopped", "destroyed"), None),
        "sla_parameters": (OBJ, False, None, None),
        "shared": (B, False, None, None),
    },
    "slapos.get.v0.software_instance": {"instance_guid": (S, True, None, None)},
    "slapos.get.v0.compute_partition": {
        "computer_guid": (S, True, None, None),
        "compute_partition_id": (S, True, None, None),
    },
    "slapos.allDocs.v0.compute_node_instance_list": {"computer_guid": (S, True, None, None)},
    "slapos.allDocs.v0.instance_node_instance_list": {"instance_guid": (S, True, None, None)},
    "slapos.allDocs.v0.compute_node_software_installation_list": {
        "computer_guid": (S, True, None, None)
    },
    "slapos.post.v0.software_installation": {
        "computer_guid": (S, True, None, None),
        "software_release_uri": (S, True, None, None),
        "state": (S, False, ("available", "destroyed"), None),
    },
    "slapos.put.v0.software_installation_reported_state": {
        "computer_guid": (S, True, None, None),
        "software_release_uri": (S, True, None, None),
        "reported_state": (S, True, ("available", "destroyed", "building"), None),
    },
    "slapos.put.v0.software_installation_error": {
        "computer_guid": (S, True, None, None),
        "software_release_uri": (S, True, None, None),
        "message": (S, True, None, None),
    },
    "slapos.put.v0.software_instance_reported_state": {
        "instance_guid": (S, True, None, None),
        "reported_state": (S, True, ("started", "destroyed", "stopped"), None),
    },
    "slapos.put.v0.software_instance_error": {
        "instance_guid": (S, True, None, None),
        "message": (S, True, None, None),
    },
    "slapos.put.v0.software_instance_connection_parameter": {
        "instance_guid": (S, True, None, None),
        "connection_parameter_dict": (OBJ, True, None, None),
    },
    "slapos.put.v0.software_instance_bang": {
        "instance_guid": (S, True, None, None),
        "message": (S, True, None, None),
    },
    "slapos.put.v0.software_instance_title": {
        "instance_guid": (S, True, None, None),
        "title": (S, True, None, 200),
    },
    "slapos.get.v0.software_instance_certificate": {"instance_guid": (S, True, None, None)},
    "slapos.put.v0.compute_node_format": {
        "computer_guid": (S, True, None, None),
        "compute_partition_list": (A, True, None, None),
    },
    "slapos.put.v0.compute_node_bang": {
        "computer_guid": (S, True, None, None),
        "message": (S, True, None, None),
    },
    "slapos.post.v0.compute_node_usage": {
        "computer_guid": (S, True, None, None),
        "tioxml": (S, True, None, None),
    },
    "slapos.get.v0.compute_node_status": {"computer_guid": (S, True, None, None)},
    "slapos.post.v0.compute_node_certificate": {"computer_guid": (S, True, None, None)},
    "slapos.remove.v0.compute_node_certificate": {"computer_guid": (S, True, None, None)},
    # ours, for the web panel (slapos.proxy.jsonrpc_wip)
    "slapos.allDocs.WIP.instance_tree_list": {},
    "slapos.allDocs.WIP.instance_tree_instance_list": {"title": (S, True, None, 200)},
    "slapos.get.WIP.compute_node": {"computer_guid": (S, True, None, None)},
    "slapos.allDocs.WIP.software_release_list": {},
    "slapos.allDocs.WIP.connection_parameter_search": {"value": (S, True, None, 1000)},
    "slapos.get.WIP.software_release_schema": {"software_release_uri": (S, True, None, 2048)},
}
_PYTHON_TYPES = {S: str, OBJ: dict, B: bool, A: list}


def validate(method: str, body: Any) -> dict[str, Any]:
    """Check `body` against the method's description; InvalidInput says what is wrong."""
    schema = SCHEMAS[method]
    if not isinstance(body, dict):
        raise InvalidInput(f"{body!r} is not of type 'object'")
    extra = [key for key in body if key not in schema]
    if extra:
        listed = ", ".join(repr(k) for k in extra)
        verb = "were" if len(extra) > 1 else "was"
        raise InvalidInput(f"Additional properties are not allowed ({listed} {verb} unexpected)")
    for key, (kind, required, enum, max_length) in schema.items():
        if key not in body:
            if required:
                raise InvalidInput(f"{key!r} is a required property")
            continue
        value = body[key]
        if not isinstance(value, _PYTHON_TYPES[kind]) or (kind != B and isinstance(value, bool)):
            raise InvalidInput(f"{value!r} is not of type {kind!r}")
        if enum is not None and value not in enum:
            raise InvalidInput(f"{value!r} is not one of {list(enum)!r}")
        if max_length is not None and isinstance(value, str) and len(value) > max_length:
            raise InvalidInput(f"{value!r} is too long")
    for key in ("sla_parameters",):
        for value in (body.get(key) or {}).values():
            if not isinstance(value, str):
                raise InvalidInput(f"{value!r} is not of type 'string'")
    if method == "slapos.put.v0.compute_node_format":
        _validate_partitions(body["compute_partition_list"])
    return body


def _validate_partitions(partitions: list[Any]) -> None:
    allowed = {
        "ip-address",
        "network-interface",
        "netmask",
        "gateway-ip-address",
        "network-address",
    }
    for partition in partitions:
        if not isinstance(partition, dict) or not isinstance(partition.get("partition_id"), str):
            raise InvalidInput("'partition_id' is a required property")
        for address in partition.get("ip_list") or []:
            if not isinstance(address, dict) or not isinstance(address.get("ip-address"), str):
                raise InvalidInput("'ip-address' is a required property")
            unknown = set(address) - allowed
            if unknown:
                names = ", ".join(map(repr, sorted(unknown)))
                raise InvalidInput(
                    f"Additional properties are not allowed ({names} was unexpected)"
                )
