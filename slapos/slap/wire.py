"""Pure codec for the legacy SLAP wire format (protocol.md §4-§5).

* xml_marshaller documents <-> Python values, restricted to the four slap classes that
  upstream's master and node exchange (module ``slapos.slap.slap``);
* instance XML (``<instance><parameter id=...>``) <-> dict of strings;
* the JSON-in-XML ``_`` convention;
* the wire names of the legacy API, as constants.

No I/O here, and nothing from the network stack: this module is safe to use from the
proxy, the node and the CLI alike. xml_marshaller documents go through the standard-library
codec of `slapos.slap.marshal` (byte-identical to xml_marshaller, tested against it);
lxml is imported only for instance XML, which a node run without changes never reads.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from slapos.slap import marshal

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

#: Module under which upstream (and we) publish the marshallable slap classes.
SLAP_MODULE = "slapos.slap.slap"
ALLOWED_CLASSES = frozenset(
    (SLAP_MODULE, name)
    for name in ("Computer", "ComputerPartition", "SoftwareRelease", "SoftwareInstance")
)

#: Parameter id carrying a JSON document (the JSON-in-XML convention, protocol.md §5.2).
JSON_KEY = "_"

# Legacy SLAP API method names (protocol.md §3). Kept as upstream spells them.
GET_FULL_COMPUTER_INFORMATION = "getFullComputerInformation"
GET_COMPUTER_INFORMATION = "getComputerInformation"
REGISTER_COMPUTER_PARTITION = "registerComputerPartition"
GET_COMPUTER_PARTITION_CERTIFICATE = "getComputerPartitionCertificate"
GET_COMPUTER_STATUS = "getComputerStatus"
GET_COMPUTER_PARTITION_STATUS = "getComputerPartitionStatus"
GET_HOSTING_SUBSCRIPTION_IP_LIST = "getHostingSubscriptionIpList"
GET_SOFTWARE_RELEASE_LIST_FROM_SOFTWARE_PRODUCT = "getSoftwareReleaseListFromSoftwareProduct"
GET_HATEOAS_URL = "getHateoasUrl"
REQUEST_COMPUTER_PARTITION = "requestComputerPartition"
REQUEST_COMPUTER = "requestComputer"
SUPPLY_SUPPLY = "supplySupply"
LOAD_COMPUTER_CONFIGURATION_FROM_XML = "loadComputerConfigurationFromXML"
SET_COMPUTER_PARTITION_CONNECTION_XML = "setComputerPartitionConnectionXml"
BUILDING_SOFTWARE_RELEASE = "buildingSoftwareRelease"
AVAILABLE_SOFTWARE_RELEASE = "availableSoftwareRelease"
DESTROYED_SOFTWARE_RELEASE = "destroyedSoftwareRelease"
SOFTWARE_RELEASE_ERROR = "softwareReleaseError"
SOFTWARE_INSTANCE_ERROR = "softwareInstanceError"
STARTED_COMPUTER_PARTITION = "startedComputerPartition"
STOPPED_COMPUTER_PARTITION = "stoppedComputerPartition"
DESTROYED_COMPUTER_PARTITION = "destroyedComputerPartition"
SOFTWARE_INSTANCE_BANG = "softwareInstanceBang"
SOFTWARE_INSTANCE_RENAME = "softwareInstanceRename"
COMPUTER_BANG = "computerBang"
USE_COMPUTER = "useComputer"
UPDATE_COMPUTER_PARTITION_RELATED_INSTANCE_LIST = "updateComputerPartitionRelatedInstanceList"
GENERATE_COMPUTER_CERTIFICATE = "generateComputerCertificate"
REVOKE_COMPUTER_CERTIFICATE = "revokeComputerCertificate"

#: Value of the Authorization header naming the calling partition (protocol.md §2.2).
PARTITION_AUTH_SCHEME = "X-SlapPartition"


class WireError(marshal.MarshalError):
    """A document is not valid for the SLAP wire format."""


class _SlapEncoder(marshal.Encoder):
    """Encodes instances of the four slap classes as xml_marshaller does (pickle protocol)."""

    def encode_other(self, value: Any) -> None:
        cls = type(value)
        if (cls.__module__, cls.__name__) not in ALLOWED_CLASSES:
            raise WireError(f"refusing to marshall {cls.__module__}.{cls.__name__}")
        get_args = getattr(value, "__getinitargs__", None)
        args = tuple(get_args()) if get_args is not None else ()
        self.encode_instance(value, cls.__module__, cls.__name__, args, value.__getstate__())


class _SlapDecoder(marshal.Decoder):
    """Builds the real slap classes: constructor arguments, then attributes set one by one."""

    FAST_PATH = True  # build_object below mirrors decode_object

    @staticmethod
    def build_object(module: str, name: str, args: tuple[Any, ...], state: dict[Any, Any]) -> Any:
        """decode_object for the fast path: any error sends the document to decode_object."""
        if (module, name) not in ALLOWED_CLASSES:
            raise WireError(f"refusing to unmarshall {module}.{name}")
        value = getattr(_slap_classes(), name)(*args)
        for key, item in state.items():
            setattr(value, key, item)
        return value

    def decode_object(self, element: ET.Element) -> Any:
        module, name = element.get("module", ""), element.get("class", "")
        if (module, name) not in ALLOWED_CLASSES:
            raise WireError(f"refusing to unmarshall {module}.{name}")
        children = list(element)
        if len(children) != 2:
            raise WireError("<object> needs an argument tuple and an attribute dictionary")
        args = self.decode(children[0])
        if not isinstance(args, tuple):
            raise WireError("<object> needs an argument tuple and an attribute dictionary")
        try:
            value = getattr(_slap_classes(), name)(*args)
        except TypeError as exc:
            raise WireError(f"in constructor for {name}: {exc}") from None
        self.register(element, value)
        state = self.decode(children[1])
        if not isinstance(state, dict):
            raise WireError("<object> needs an argument tuple and an attribute dictionary")
        for key, item in state.items():
            setattr(value, key, item)
        return value


def _slap_classes() -> Any:
    """slapos.slap.slap imports this module: its classes are looked up at run time."""
    return sys.modules.get(SLAP_MODULE) or importlib.import_module(SLAP_MODULE)


def dumps(value: Any) -> str:
    """Marshal `value` as an xml_marshaller document, byte-identical to upstream's output."""
    try:
        return marshal.dumps(value, _SlapEncoder)
    except WireError:
        raise
    except marshal.MarshalError as exc:
        raise WireError(str(exc)) from None


def loads(document: bytes | str) -> Any:
    """Unmarshal an xml_marshaller document; WireError if it is not one."""
    if isinstance(document, bytes):
        if not document.strip():
            raise WireError("empty document")
    elif not document.strip():
        raise WireError("empty document")
    try:
        return marshal.loads(document, _SlapDecoder)
    except WireError:
        raise
    except marshal.MarshalError as exc:
        raise WireError(f"not an xml_marshaller document: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------
# Instance XML (protocol.md §5.1)


def dict_to_instance_xml(parameters: Mapping[Any, Any]) -> str:
    """`{'a': 1}` -> the `<instance><parameter id="a">1</parameter></instance>` document.

    Keys are sorted; non-string values become `str(value)`, as upstream does.
    """
    from lxml import etree  # imported here: node runs without changes never need it

    root = etree.Element("instance")
    for key, value in sorted(parameters.items()):
        element = etree.SubElement(root, "parameter", attrib={"id": _text(key)})
        element.text = _text(value)
    out: bytes = etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="utf-8")
    return out.decode("utf-8")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value if isinstance(value, str) else str(value)


def instance_xml_to_dict(xml: str | bytes | None) -> dict[str, str | None]:
    """Inverse of dict_to_instance_xml; repeated ids are joined with a space."""
    if not xml:
        return {}
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise WireError(f"invalid instance XML: {exc}") from exc
    result: dict[str, str | None] = {}
    for element in root.iterfind("parameter"):
        key = element.get("id")
        if key is None:
            raise WireError("invalid instance XML: <parameter> without id")
        previous = result.get(key)
        text = element.text
        result[key] = f"{previous} {text or ''}" if previous is not None else text
    return result


# ---------------------------------------------------------------------------------------
# JSON-in-XML (protocol.md §5.2)


def wrap_json_in_xml(data: Any) -> dict[str, str]:
    """Structured parameters -> `{'_': '<json>'}`, unless `data` already is `{'_': str}`."""
    if isinstance(data, dict) and set(data) == {JSON_KEY} and isinstance(data[JSON_KEY], str):
        return {JSON_KEY: data[JSON_KEY]}
    return {JSON_KEY: json.dumps(data, indent=2)}


def unwrap_json_in_xml(parameters: Mapping[str, Any]) -> Any:
    """`{'_': '<json>'}` -> the decoded JSON; any other mapping is returned unchanged.

    A `_` that is not valid JSON is returned unchanged too (shown as is, never lost).
    """
    if len(parameters) == 1 and JSON_KEY in parameters:
        raw = parameters[JSON_KEY]
        if isinstance(raw, str):
            try:
                return json.loads(raw)
            except ValueError:
                return dict(parameters)
    return dict(parameters)


def partition_authorization(computer_id: str | None, partition_id: str | None) -> str:
    """The `Authorization` header value identifying a partition (not a credential)."""
    return (
        f"{PARTITION_AUTH_SCHEME} computer_id={computer_id}, computer_partition_id={partition_id}"
    )
