"""The wire objects a node reads from the master: a partition, a software release, and the
shared instances a partition hosts, shaped exactly like upstream's proxy answers (§4.7).

Imports only the standard library and the slap codecs (marshal, instance_xml).
"""

from __future__ import annotations

import logging
from typing import Any

from slapos.slap.instance_xml import xml2dict
from slapos.slap.marshal import MarshalError, WireObject, loads

log = logging.getLogger(__name__)


def software_release(url: str, computer_id: str) -> WireObject:
    return WireObject(
        "SoftwareRelease",
        (url, computer_id),
        {"_software_instance_list": [], "_software_release": url, "_computer_guid": computer_id},
    )


def shared_entries(text: str | None) -> list[dict[str, Any]]:
    """The marshalled slave_instance_list column, as a list of dicts."""
    if not text:
        return []
    try:
        value = loads(text)
    except MarshalError:
        log.warning("unreadable slave_instance_list ignored: %.60s", text)
        return []
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def partition_object(row: Any, addresses: list[tuple[str, str]]) -> WireObject:
    """A partition as the node sees it (§4.7.2, §4.8)."""
    computer_id, partition_id = row["computer_reference"], row["reference"]
    state: dict[str, Any] = {
        "_computer_id": computer_id,
        "_partition_id": partition_id,
        "_request_dict": None,
        "_software_release_document": None,
        "_requested_state": "destroyed",
        "_need_modification": 0,
        "_instance_guid": f"{computer_id}-{partition_id}",
    }
    url = row["software_release"]
    if url:
        parameters: dict[str, Any] = dict(xml2dict(row["xml"]))
        parameters.update(
            ip_list=list(addresses),
            full_address_list=[],
            slap_software_type=row["software_type"],
            instance_title=row["partition_reference"],
            root_instance_title=row["requested_by"] or row["partition_reference"],
            slap_computer_id=computer_id,
            slap_computer_partition_id=partition_id,
            slap_software_release_url=url,
            slave_instance_list=shared_entries(row["slave_instance_list"]),
        )
        if row["timestamp"]:
            parameters["timestamp"] = str(row["timestamp"])
        state.update(
            _need_modification=1,
            _requested_state=row["requested_state"],
            _parameter_dict=parameters,
            _connection_dict=xml2dict(row["connection_xml"]),
            _software_release_document=software_release(url, computer_id),
        )
    return WireObject("ComputerPartition", (computer_id, partition_id, None), state)
