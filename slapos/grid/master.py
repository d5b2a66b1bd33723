"""The master as the instance side of the node sees it: the calls `node instance`,
`node promise` and `node report` make (slapos.grid.instance, instance_apply,
instance_observe, report; slapos.collect.usage through the report engine).

`MasterComputer` and `MasterPartition` name exactly those calls, in upstream's spelling:
the slap library's `Computer` and `ComputerPartition` (public API, upstream's names)
satisfy them as they are, with no adapter, and mypy checks every call the engines make
(`connect_master` returns the real object as a `MasterComputer`; tests/fakes/master.py
holds the fakes that stand for them). The software side's master is the smaller
`slapos.grid.software.SoftwareMaster`.

What the engines read of a partition beyond a plain call (a release that may be missing,
parameters the master may omit, the attributes the master's answer sets without a getter)
is read here, in the `*_of` functions, and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from slapos.errors import SlapOSError
from slapos.grid.instance_plan import DESTROYED

if TYPE_CHECKING:
    from slapos.config import NodeConfig

log = logging.getLogger(__name__)


class PartitionRelease(Protocol):
    """The software release a partition runs (slapos.slap's SoftwareRelease)."""

    def getURI(self) -> str: ...


class MasterPartition(Protocol):
    """A computer partition (slapos.slap's ComputerPartition): what the engines ask and
    tell the master about it."""

    def getId(self) -> str: ...
    def getState(self) -> str: ...
    def getSoftwareRelease(self) -> PartitionRelease: ...
    def getInstanceParameterDict(self) -> Mapping[str, object]: ...
    #: what the master last recorded of the instance (a text starting with "#error" when it
    #: failed), or None when the master does not say (slapproxy never does)
    def getAccessStatus(self) -> object: ...
    def getCertificate(self) -> Mapping[str, str]: ...
    def started(self) -> None: ...
    def stopped(self) -> None: ...
    def destroyed(self) -> None: ...
    def error(self, error_log: str) -> None: ...
    def bang(self, message: str) -> None: ...
    def setComputerPartitionRelatedInstanceList(
        self, instance_reference_list: Sequence[str]
    ) -> None: ...


class MasterComputer(Protocol):
    """This node's computer (slapos.slap's Computer): its partitions, and the usage reports
    `node report` sends (slapos.collect.usage)."""

    def getComputerPartitionList(self) -> Sequence[MasterPartition]: ...
    def reportUsage(self, computer_usage: str) -> None: ...


def connect_master(config: NodeConfig) -> MasterComputer:
    """The slap library's Computer object for this node."""
    from slapos.slap.entry import connect

    return connect(config.master).registerComputer(config.computer_id)


def offline_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning "the master cannot be reached": go offline rather than fail.

    The slap library reports every transport failure as its ConnectionError.
    """
    from slapos.slap import exception as slap_exc

    return (slap_exc.ConnectionError, slap_exc.ServerError)


# ---- what the engines read of a partition ------------------------------------------------


def software_url_of(cp: MasterPartition) -> str | None:
    """The partition's software release URL; None for a free partition."""
    try:
        sr = cp.getSoftwareRelease()
        url = sr.getURI() if sr is not None else None
    except (SlapOSError, AttributeError):  # a free partition has no release
        return None
    return url or None


def parameters_of(cp: MasterPartition) -> dict[str, Any]:
    """The instance parameters; {} when the master gives none."""
    try:
        return dict(cp.getInstanceParameterDict() or {})
    except (SlapOSError, AttributeError):
        return {}


def software_type_of(cp: MasterPartition) -> str:
    return str(parameters_of(cp).get("slap_software_type") or "")


def retention_delay_of(cp: MasterPartition) -> float:
    """The `retention_delay` (days) of the request's filter; 0 when absent or invalid.

    No getter carries the filter: the master's answer sets `_filter_dict`, as upstream's.
    """
    value = getattr(cp, "_filter_dict", None)
    raw = value.get("retention_delay", "0") if isinstance(value, dict) else "0"
    try:
        return float(raw)
    except (TypeError, ValueError):
        log.warning("%s: invalid retention_delay %r, using 0", cp.getId(), raw)
        return 0.0


def connection_keys_of(cp: MasterPartition) -> tuple[str, ...]:
    """Names of the connection parameters the master sent with the partition (no call:
    the answer's `_connection_dict`, read without fetching what is missing)."""
    value = getattr(cp, "_connection_dict", None)
    if not isinstance(value, dict):
        return ()
    if set(value) == {"_"} and isinstance(value["_"], str):
        with contextlib.suppress(ValueError):
            inner = json.loads(value["_"])
            if isinstance(inner, dict):
                return tuple(sorted(str(k) for k in inner))
    return tuple(sorted(str(k) for k in value))


def is_free(cp: MasterPartition) -> bool:
    """Destroyed with no software release: nothing is deployed there."""
    return bool(cp.getState() == DESTROYED and software_url_of(cp) is None)
