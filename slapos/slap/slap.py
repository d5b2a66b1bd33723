"""The slap objects, under upstream's names and signatures (protocol.md §3, §4.7).

This module name is part of the wire format: xml_marshaller documents name their classes
`slapos.slap.slap.Computer`, `ComputerPartition`, `SoftwareRelease` and `SoftwareInstance`,
and decoding instantiates the classes defined here. Their attribute names (`_computer_id`,
`_parameter_dict`, ...) are therefore wire names too and must not change.

Differences from upstream 1.26.1 (see docs/slap.rst):
* `master_ca_file` is honoured (the master's certificate is verified) instead of raising
  NotImplementedError;
* the HATEOAS root is looked up lazily, at the first call that needs it, instead of with an
  extra GET at every `initializeConnection`;
* a shared-instance answer without `_requested_state` reports the requested state instead of
  silently asking the master for the *host* partition's state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from slapos.slap import wire
from slapos.slap.exception import (
    AuthenticationError,
    ConnectionError,
    HTTPError,
    NotFoundError,
    ResourceNotReady,
    ServerError,
    SlapException,
)
from slapos.slap.request import (
    COMPUTER_PARTITION_REQUEST_LIST_TEMPLATE_FILENAME,
    DEFAULT_SOFTWARE_TYPE,
    FALSE_XML,
    INSTANCE_ROOT_ENVIRON,
    OLD_DEFAULT_SOFTWARE_TYPE,
    TRUE_XML,
    build_request_dict,
    record_request,
)

if TYPE_CHECKING:
    from slapos.slap.entry import OpenOrder, SoftwareProductCollection, Supply, Token, slap

# The wire documents, then upstream's other names, still importable from here.
__all__ = ["Computer", "ComputerPartition", "SoftwareInstance", "SoftwareRelease"]
__all__ += ["OpenOrder", "SoftwareProductCollection", "Supply", "Token", "slap"]  # entry.py
__all__ += ["AuthenticationError", "ConnectionError", "HTTPError", "NotFoundError"]
__all__ += ["ResourceNotReady", "ServerError", "SlapException"]  # exception.py
__all__ += ["COMPUTER_PARTITION_REQUEST_LIST_TEMPLATE_FILENAME", "DEFAULT_SOFTWARE_TYPE"]
__all__ += ["INSTANCE_ROOT_ENVIRON", "OLD_DEFAULT_SOFTWARE_TYPE", "build_request_dict"]

log = logging.getLogger(__name__)

#: Upstream's names defined in slapos.slap.entry (which imports this module): looked up
#: there on first use, so `from slapos.slap.slap import slap, OpenOrder` keeps working.
_ENTRY_NAMES = frozenset({"OpenOrder", "SoftwareProductCollection", "Supply", "Token", "slap"})


def __getattr__(name: str) -> Any:
    if name in _ENTRY_NAMES:
        from slapos.slap import entry

        return getattr(entry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


NO_HATEOAS = "SlapOS Master Hateoas API required for this operation is not available."


class SlapDocument:
    """Base of the slap objects: holds the connection (when there is one)."""

    def __init__(self, connection_helper: Any = None, hateoas_navigator: Any = None) -> None:
        # Only set when given: objects built by a master to be marshalled must not carry
        # these attributes (their __dict__ is the wire document).
        if connection_helper is not None:
            self._connection_helper = connection_helper
            self._hateoas_navigator = hateoas_navigator

    def _connection(self) -> Any:
        helper = getattr(self, "_connection_helper", None)
        if helper is None:
            raise SlapException(
                f"{type(self).__name__} is not connected to a master "
                "(get it from slap().register...() after initializeConnection())"
            )
        return helper

    def _navigator(self) -> Any:
        navigator = getattr(self, "_hateoas_navigator", None)
        if navigator is None:
            raise SlapException(NO_HATEOAS)
        return navigator

    def _attach(self, other: SlapDocument) -> None:
        helper = getattr(self, "_connection_helper", None)
        if helper is not None:
            other._connection_helper = helper
            other._hateoas_navigator = getattr(self, "_hateoas_navigator", None)


class SlapRequester(SlapDocument):
    """Shared `request()` machinery of OpenOrder and ComputerPartition."""

    def getInformation(self, partition_reference: str) -> SoftwareInstance:
        """The instance tree `partition_reference` as the HATEOAS API describes it (upstream's
        ComputerPartition.getInformation is broken; ours works from both sides)."""
        data = self._navigator().getInstanceTreeRootSoftwareInstanceInformation(
            partition_reference
        )["data"]
        return software_instance_from_hateoas(data)

    def _requestComputerPartition(
        self, request_dict: dict[str, Any], auth: tuple[str, str] | None = None
    ) -> ComputerPartition:
        connection = self._connection()
        try:
            body = connection.post(wire.REQUEST_COMPUTER_PARTITION, request_dict, partition=auth)
        except ResourceNotReady:
            # Not an error: the master accepted the request and will allocate it later.
            pending = ComputerPartition(request_dict=request_dict)
            self._attach(pending)
            return pending
        software_instance = connection.decode(wire.REQUEST_COMPUTER_PARTITION, body)
        try:
            computer_id = software_instance.slap_computer_id
            partition_id = software_instance.slap_computer_partition_id
        except AttributeError as exc:
            raise ServerError(
                f"master {connection.master_url} answered {wire.REQUEST_COMPUTER_PARTITION} "
                f"without {exc.name}"
            ) from exc
        partition = ComputerPartition(computer_id, partition_id)
        # The answer is a SoftwareInstance; upstream hands all its attributes to the
        # partition object, and callers rely on them (ip_list, slap_software_type...).
        attributes = dict(software_instance.__dict__)
        attributes.pop("_connection_helper", None)
        attributes.pop("_hateoas_navigator", None)
        partition.__dict__.update(attributes)
        self._attach(partition)
        shared_xml = request_dict["shared_xml"]
        if shared_xml == TRUE_XML or (shared_xml != FALSE_XML and wire.loads(shared_xml)):
            partition._synced = True
            partition._connection_dict = getattr(software_instance, "_connection_dict", None)
            partition._parameter_dict = getattr(software_instance, "_parameter_dict", None)
            if not hasattr(partition, "_requested_state"):
                state = wire.loads(request_dict["state"])
                partition._requested_state = state or "started"
        return partition


class SoftwareRelease(SlapDocument):
    """A software release supplied to a computer (node side: report its build state)."""

    def __init__(
        self,
        software_release: str | None = None,
        computer_guid: str | None = None,
        requested_state: str = "available",
        **kw: Any,
    ) -> None:
        super().__init__(kw.pop("connection_helper", None), kw.pop("hateoas_navigator", None))
        self._software_instance_list: list[Any] = []
        self._software_release = software_release
        self._computer_guid = computer_guid
        # requested_state is accepted but not stored, as upstream: a missing
        # _requested_state means "available" (see getState).
        del requested_state

    def __getinitargs__(self) -> tuple[Any, ...]:
        return (self._software_release, self._computer_guid)

    def __repr__(self) -> str:
        return f"<SoftwareRelease {self._software_release!r} on {self._computer_guid!r}>"

    def getComputerId(self) -> str:
        if not self._computer_guid:
            raise NameError("computer_guid has not been defined.")
        return self._computer_guid

    def getURI(self) -> str:
        if not self._software_release:
            raise NameError("software_release has not been defined.")
        return self._software_release

    def getState(self) -> str:
        return str(getattr(self, "_requested_state", "available"))

    def _report(self, method: str, **extra: str) -> None:
        self._connection().post(
            method, {"url": self.getURI(), "computer_id": self.getComputerId(), **extra}
        )

    def building(self) -> None:
        self._report(wire.BUILDING_SOFTWARE_RELEASE)

    def available(self) -> None:
        self._report(wire.AVAILABLE_SOFTWARE_RELEASE)

    def destroyed(self) -> None:
        self._report(wire.DESTROYED_SOFTWARE_RELEASE)

    def error(self, error_log: str, logger: logging.Logger | None = None) -> None:
        """Report a build failure; never raises (the build already failed)."""
        try:
            self._report(wire.SOFTWARE_RELEASE_ERROR, error_log=error_log)
        except SlapException as exc:
            (logger or log).error("cannot report software release error: %s", exc)


class SoftwareInstance(SlapDocument):
    """Instance data as the master returns it (answer of requestComputerPartition)."""

    # Declared for the type checker only: they exist when the master sent them.
    _parameter_dict: Any
    _connection_dict: Any
    _requested_state: Any
    _software_release_url: Any

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def software_instance_from_hateoas(data: Mapping[str, Any]) -> SoftwareInstance:
    instance = SoftwareInstance()
    for key, value in data.items():
        if key != "_links":
            setattr(instance, f"_{key}", value)
    text = data.get("text_content")
    parameters: Any = wire.instance_xml_to_dict(text) if text else {}
    if len(parameters) == 1 and wire.JSON_KEY in parameters:
        parameters = {wire.JSON_KEY: wire.unwrap_json_in_xml(parameters)}
    instance._parameter_dict = parameters
    instance._requested_state = data.get("slap_state")
    instance._connection_dict = data.get("connection_parameter_list")
    instance._software_release_url = data.get("url_string")
    return instance


class Computer(SlapDocument):
    """A node: what it must install and run, and its reports to the master."""

    # Set from getFullComputerInformation (declared for the type checker only).
    _computer_partition_list: list[ComputerPartition]
    _software_release_list: list[SoftwareRelease]
    _synced: bool

    def __init__(
        self, computer_id: str, connection_helper: Any = None, hateoas_navigator: Any = None
    ) -> None:
        super().__init__(connection_helper, hateoas_navigator)
        self._computer_id = computer_id

    def __getinitargs__(self) -> tuple[Any, ...]:
        return (self._computer_id,)

    def __repr__(self) -> str:
        return f"<Computer {self._computer_id!r}>"

    def _sync(self) -> None:
        """Fetch getFullComputerInformation once per object."""
        if getattr(self, "_synced", False):
            return
        computer = fetch_full_computer_information(self._connection(), self._computer_id)
        self.__dict__.update(
            (k, v)
            for k, v in computer.__dict__.items()
            if k not in ("_connection_helper", "_hateoas_navigator")
        )
        self._synced = True
        for partition in self._computer_partition_list:
            partition._synced = True

    def getSoftwareReleaseList(self) -> list[SoftwareRelease]:
        """Software releases supplied to this computer (both available and destroyed)."""
        self._sync()
        for software_release in self._software_release_list:
            self._attach(software_release)
        return list(self._software_release_list)

    def getComputerPartitionList(self) -> list[ComputerPartition]:
        """Every partition of this computer, free ones included."""
        self._sync()
        for partition in self._computer_partition_list:
            self._attach(partition)
        return list(self._computer_partition_list)

    def reportUsage(self, computer_usage: str) -> None:
        if computer_usage == "":
            return
        self._connection().post(
            wire.USE_COMPUTER, {"computer_id": self._computer_id, "use_string": computer_usage}
        )

    def updateConfiguration(self, xml: str) -> str:
        """Post the node description (a marshalled dict, protocol.md §5.4)."""
        body: bytes = self._connection().post(
            wire.LOAD_COMPUTER_CONFIGURATION_FROM_XML, {"xml": xml}
        )
        return body.decode("utf-8", "replace")

    def bang(self, message: str) -> None:
        self._connection().post(
            wire.COMPUTER_BANG, {"computer_id": self._computer_id, "message": message}
        )

    def getStatus(self) -> Any:
        return self._connection().get_document(
            wire.GET_COMPUTER_STATUS, {"computer_id": self._computer_id}
        )

    def revokeCertificate(self) -> None:
        self._connection().post(
            wire.REVOKE_COMPUTER_CERTIFICATE, {"computer_id": self._computer_id}
        )

    def generateCertificate(self) -> Any:
        return self._connection().post_document(
            wire.GENERATE_COMPUTER_CERTIFICATE, {"computer_id": self._computer_id}
        )

    def getInformation(self) -> Computer:
        data = self._navigator()._getComputer(reference=self._computer_id)["data"]
        computer = Computer(self._computer_id)
        for key, value in data.items():
            if key != "_links":
                setattr(computer, f"_{key}", value)
        return computer


def fetch_full_computer_information(connection: Any, computer_id: str) -> Computer:
    """getFullComputerInformation, falling back to getComputerInformation on 404."""
    params = {"computer_id": computer_id}
    if not computer_id:
        raise NotFoundError(f"{wire.GET_FULL_COMPUTER_INFORMATION}: no computer_id given")
    try:
        body = connection.get(wire.GET_FULL_COMPUTER_INFORMATION, params)
        call = wire.GET_FULL_COMPUTER_INFORMATION
    except NotFoundError:
        body = connection.get(wire.GET_COMPUTER_INFORMATION, params)
        call = wire.GET_COMPUTER_INFORMATION
    computer = connection.decode(call, body)
    if not isinstance(computer, Computer):
        raise ServerError(
            f"master {connection.master_url} answered {call} with "
            f"{type(computer).__name__}, not a Computer"
        )
    return computer


class ComputerPartition(SlapRequester):
    """A partition: the node reports on it, and its instance requests other instances."""

    # Lazily fetched with registerComputerPartition, or sent by the master in a
    # request answer. Declared for the type checker only: `hasattr` tells if fetched.
    _instance_guid: str | None
    _requested_state: str | None
    _software_release_document: SoftwareRelease | str | None
    _parameter_dict: dict[str, Any] | None
    _connection_dict: dict[str, Any] | None
    _synced: bool

    def __init__(
        self,
        computer_id: str | None = None,
        partition_id: str | None = None,
        request_dict: dict[str, Any] | None = None,
        connection_helper: Any = None,
        hateoas_navigator: Any = None,
    ) -> None:
        super().__init__(connection_helper, hateoas_navigator)
        if request_dict is not None and (computer_id is not None or partition_id is not None):
            raise TypeError("request_dict conflicts with computer_id and partition_id")
        if request_dict is None and (computer_id is None or partition_id is None):
            raise TypeError("computer_id and partition_id or request_dict are required")
        self._computer_id = computer_id
        self._partition_id = partition_id
        self._request_dict = request_dict
        # Create the (empty) transaction file when run by slapgrid, as upstream does.
        record_request(partition_id, None)

    def __getinitargs__(self) -> tuple[Any, ...]:
        return (self._computer_id, self._partition_id, self._request_dict)

    def __repr__(self) -> str:
        return f"<ComputerPartition {self._computer_id!r} {self._partition_id!r}>"

    # -- request ---------------------------------------------------------------------

    def _auth(self) -> tuple[str, str]:
        return (str(self._computer_id), str(self._partition_id))

    def request(
        self,
        software_release: str,
        software_type: str | None,
        partition_reference: str,
        shared: bool = False,
        partition_parameter_kw: Mapping[str, Any] | None = None,
        filter_kw: Mapping[str, Any] | None = None,
        state: str | None = None,
    ) -> ComputerPartition:
        """Request a child (or shared) instance on behalf of this partition."""
        request_dict = {
            "computer_id": self._computer_id,
            "computer_partition_id": self._partition_id,
            **build_request_dict(
                software_release,
                partition_reference,
                partition_parameter_kw,
                software_type,
                filter_kw,
                state,
                shared,
            ),
        }
        record_request(self._partition_id, partition_reference)
        return self._requestComputerPartition(request_dict, auth=self._auth())

    # -- reports (POST, with X-SlapPartition) ------------------------------------------

    def _post(self, method: str, **data: Any) -> bytes:
        form = {"computer_id": self._computer_id, "computer_partition_id": self.getId(), **data}
        body: bytes = self._connection().post(method, form, partition=self._auth())
        return body

    def destroyed(self) -> None:
        self._post(wire.DESTROYED_COMPUTER_PARTITION)

    def started(self) -> None:
        self._post(wire.STARTED_COMPUTER_PARTITION)

    def stopped(self) -> None:
        self._post(wire.STOPPED_COMPUTER_PARTITION)

    def error(
        self,
        error_log: str,
        logger: logging.Logger | None = None,
        slave_reference: str | None = None,
    ) -> None:
        """Report an instance failure; never raises (the failure is already being handled)."""
        extra = {"slave_reference": slave_reference} if slave_reference else {}
        try:
            self._post(wire.SOFTWARE_INSTANCE_ERROR, error_log=error_log, **extra)
        except SlapException as exc:
            (logger or log).error("cannot report instance error: %s", exc)

    def bang(self, message: str) -> None:
        self._post(wire.SOFTWARE_INSTANCE_BANG, message=message)

    def rename(self, new_name: str, slave_reference: str | None = None) -> None:
        extra = {"slave_reference": slave_reference} if slave_reference else {}
        self._post(wire.SOFTWARE_INSTANCE_RENAME, new_name=new_name, **extra)

    def setConnectionDict(
        self, connection_dict: Mapping[str, Any], slave_reference: str | None = None
    ) -> None:
        """Publish connection parameters (of this instance, or of a shared one it hosts)."""
        self._connection().post(
            wire.SET_COMPUTER_PARTITION_CONNECTION_XML,
            {
                "computer_id": self._computer_id,
                "computer_partition_id": self._partition_id,
                "connection_xml": wire.dumps(dict(connection_dict)),
                "slave_reference": slave_reference,
            },
            partition=self._auth(),
        )

    def setComputerPartitionRelatedInstanceList(
        self, instance_reference_list: Sequence[str]
    ) -> None:
        self._connection().post(
            wire.UPDATE_COMPUTER_PARTITION_RELATED_INSTANCE_LIST,
            {
                "computer_id": self._computer_id,
                "computer_partition_id": self._partition_id,
                "instance_reference_xml": wire.dumps(list(instance_reference_list)),
            },
            partition=self._auth(),
        )

    def setUsage(self, usage_log: str) -> None:
        self.usage = usage_log

    # -- getters -----------------------------------------------------------------------

    def getId(self) -> str:
        if not getattr(self, "_partition_id", None):
            raise ResourceNotReady("the instance is not allocated to a partition yet")
        return str(self._partition_id)

    def _fetch(self) -> None:
        """registerComputerPartition: refresh the instance data of this partition."""
        partition = self._connection().get_document(
            wire.REGISTER_COMPUTER_PARTITION,
            {"computer_reference": self._computer_id, "computer_partition_reference": self.getId()},
        )
        for name in (
            "_instance_guid",
            "_requested_state",
            "_software_release_document",
            "_parameter_dict",
            "_connection_dict",
        ):
            setattr(self, name, getattr(partition, name, None))
        for name in ("_access_status", "_filter_dict"):
            if hasattr(partition, name):
                setattr(self, name, getattr(partition, name))

    # upstream spelling, used by some tools
    _fetchComputerPartitionInformation = _fetch

    def getInstanceGuid(self) -> str:
        if not hasattr(self, "_instance_guid"):
            self._fetch()
        if self._instance_guid is None:
            raise ResourceNotReady("the instance has no guid yet")
        return str(self._instance_guid)

    def getState(self) -> str:
        if not hasattr(self, "_requested_state"):
            self._fetch()
        if self._requested_state is None:
            raise ResourceNotReady("the instance has no requested state yet")
        return str(self._requested_state)

    def getAccessStatus(self) -> Any:
        return getattr(self, "_access_status", None)

    getStatus = getAccessStatus

    def getType(self) -> str:
        software_type = self.getInstanceParameterDict().get("slap_software_type")
        if not software_type:
            raise ResourceNotReady("the instance has no software type yet")
        return str(software_type)

    def getInstanceParameterDict(self) -> dict[str, Any]:
        if not hasattr(self, "_parameter_dict"):
            self._fetch()
        return self._parameter_dict or {}  # type: ignore[no-any-return]

    def getConnectionParameterDict(self) -> dict[str, Any]:
        if not hasattr(self, "_connection_dict"):
            self._fetch()
        connection_dict = self._connection_dict
        if connection_dict is None:
            # old masters only sent the raw instance XML
            connection_dict = wire.instance_xml_to_dict(getattr(self, "connection_xml", None))
        return connection_dict or {}  # type: ignore[no-any-return]

    def getInstanceParameter(self, key: str) -> Any:
        try:
            return self.getInstanceParameterDict()[key]
        except KeyError:
            raise NotFoundError(f"{key} not found") from None

    def getConnectionParameter(self, key: str) -> Any:
        try:
            return self.getConnectionParameterDict()[key]
        except KeyError:
            raise NotFoundError(f"{key} not found") from None

    def getSoftwareRelease(self) -> SoftwareRelease:
        if not hasattr(self, "_software_release_document"):
            self._fetch()
        document = self._software_release_document
        if document is None:
            raise NotFoundError(f"No software release information for partition {self.getId()}")
        if isinstance(document, str):  # forwarded answers carry a plain URL (protocol §8.9)
            document = SoftwareRelease(document, self._computer_id)
        self._attach(document)
        return document  # type: ignore[no-any-return]

    def getCertificate(self) -> dict[str, str]:
        return self._connection().get_document(  # type: ignore[no-any-return]
            wire.GET_COMPUTER_PARTITION_CERTIFICATE,
            {"computer_id": self._computer_id, "computer_partition_id": self._partition_id},
        )

    def getFullHostingIpAddressList(self) -> list[Any]:
        return self._connection().get_document(  # type: ignore[no-any-return]
            wire.GET_HOSTING_SUBSCRIPTION_IP_LIST,
            {"computer_id": self._computer_id, "computer_partition_id": self._partition_id},
        )
