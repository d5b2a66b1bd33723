"""The request form of requestComputerPartition, and the request transaction file.

Both the user side (`OpenOrder.request`) and instance code (`ComputerPartition.request`)
send the same form (protocol.md §3.4); an instance that requests also records what it
requested, so that the node can later destroy what is no longer requested (node.md §5.9).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from slapos.slap import wire

log = logging.getLogger(__name__)

DEFAULT_SOFTWARE_TYPE = "default"
OLD_DEFAULT_SOFTWARE_TYPE = "RootSoftwareInstance"
#: `<instance_root>/<partition>/.slapos-request-transaction-<partition>` (node.md §5.9).
COMPUTER_PARTITION_REQUEST_LIST_TEMPLATE_FILENAME = ".slapos-request-transaction-%s"
#: Set by slapgrid while it runs a partition's buildout; names the instance root.
INSTANCE_ROOT_ENVIRON = "SLAPGRID_INSTANCE_ROOT"

#: The documents most requests send (wire.dumps is deterministic): made once, not per call.
EMPTY_DICT_XML = wire.dumps({})
NONE_XML = wire.dumps(None)
TRUE_XML = wire.dumps(True)
FALSE_XML = wire.dumps(False)


def build_request_dict(
    software_release: str,
    partition_reference: str,
    partition_parameter_kw: Mapping[str, Any] | None,
    software_type: str | None,
    filter_kw: Mapping[str, Any] | None,
    state: str | None,
    shared: bool,
) -> dict[str, Any]:
    """The form of requestComputerPartition (protocol.md §3.4)."""
    parameters = _dict_argument("partition_parameter_kw", partition_parameter_kw)
    filters = _dict_argument("filter_kw", filter_kw)
    return {
        "software_release": software_release,
        "partition_reference": partition_reference,
        "partition_parameter_xml": wire.dumps(parameters) if parameters else EMPTY_DICT_XML,
        "filter_xml": wire.dumps(filters) if filters else EMPTY_DICT_XML,
        "software_type": DEFAULT_SOFTWARE_TYPE if software_type is None else software_type,
        "state": NONE_XML if state is None else wire.dumps(state),
        "shared_xml": TRUE_XML if shared else FALSE_XML,
    }


def _dict_argument(name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"Unexpected type of {name} '{value}'")
    return dict(value)


def record_request(partition_id: str | None, partition_reference: str | None) -> None:
    """Add `partition_reference` to the partition's request transaction file (node.md §5.9);
    with None, only create the file (empty).

    slapgrid sets SLAPGRID_INSTANCE_ROOT while it runs the partition's buildout; that
    environment variable is the only channel upstream defines between the two. Outside
    slapgrid, or in a partition we cannot write to, nothing is recorded.
    """
    instance_root = os.environ.get(INSTANCE_ROOT_ENVIRON, "")
    if not instance_root or not partition_id:
        return
    directory = os.path.join(instance_root, partition_id)
    path = os.path.join(directory, COMPUTER_PARTITION_REQUEST_LIST_TEMPLATE_FILENAME % partition_id)
    try:
        if partition_reference is None:
            if os.access(directory, os.W_OK) and not os.path.exists(path):
                with open(path, "a"):
                    pass
        else:
            with open(path, "a") as transaction:
                transaction.write(f"{partition_reference}\n")
    except OSError as exc:  # a partition we cannot write to: the node will notice
        log.debug("cannot update %s: %s", path, exc)
