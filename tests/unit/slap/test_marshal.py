"""The codecs the proxy speaks (slapos.slap.marshal, slapos.slap.instance_xml) against the
reference implementations (xml_marshaller, lxml)."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree
from xml_marshaller import xml_marshaller

from slapos.slap import instance_xml, marshal
from slapos.slap.marshal import MarshalError, WireObject


def _lxml_dict2xml(parameters: dict[str, Any]) -> str:
    """upstream's dict2xml, rebuilt here from its observable behaviour."""
    instance = etree.Element("instance")
    for key, value in sorted(parameters.items()):
        etree.SubElement(instance, "parameter", attrib={"id": key}).text = (
            value if isinstance(value, str) else str(value)
        )
    text: str = etree.tostring(
        instance, pretty_print=True, xml_declaration=True, encoding="utf-8"
    ).decode()
    return text


STRINGS = [
    "",
    "plain",
    "a&b<c>\"d' \u00e9 \u20ac \n\ttab",
    "a\rb\r\nc",
    "x\U0001f600y",
    "&amp; &lt; already escaped",
    "<?xml version='1.0' encoding='utf-8'?>\n<instance/>\n",
    "\x7f del and \x85 nel",
    " spaces  ",
]

VALUES = [
    *STRINGS,
    0,
    -1,
    10**23,
    10**24,
    -(10**24) + 1,
    999999999999999983222784,
    1.5,
    1e300,
    float("inf"),
    True,
    False,
    None,
    (),
    ("slaptap0", "10.0.0.1"),
    [],
    [1, [2, []]],
    {},
    {"b": 1, "a": 2, 1: "int key"},
    {"x": {"y": [1, ("t", None)]}},
    {1, 2},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_dumps_is_byte_identical_to_xml_marshaller(value: object) -> None:
    assert marshal.dumps(value).encode("ascii") == xml_marshaller.dumps(value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_loads_reads_what_xml_marshaller_writes(value: object) -> None:
    assert marshal.loads(xml_marshaller.dumps(value)) == xml_marshaller.loads(
        xml_marshaller.dumps(value)
    )


def test_shared_containers_become_references() -> None:
    inner = [1]
    value = {"x": inner, "y": inner}
    assert marshal.dumps(value).encode() == xml_marshaller.dumps(value)
    decoded = marshal.loads(marshal.dumps(value))
    assert decoded["x"] is decoded["y"]


class ComputerPartition:
    """Stand-in with upstream's module and class names."""

    def __init__(self, computer_id: str, partition_id: str, request_dict: object = None):
        self._computer_id = computer_id
        self._partition_id = partition_id
        self._request_dict = request_dict

    def __getinitargs__(self) -> tuple[object, ...]:
        return (self._computer_id, self._partition_id, self._request_dict)


ComputerPartition.__module__ = "slapos.slap.slap"


def test_objects_match_xml_marshaller() -> None:
    reference = ComputerPartition("COMP", "slappart0")
    # the attributes upstream's master sets on the objects it sends
    vars(reference).update(
        _instance_guid="COMP-slappart0",
        _parameter_dict={"ip_list": [("tap", "10.0.0.1")], "k": "v"},
    )
    ours = WireObject(
        "ComputerPartition",
        ("COMP", "slappart0", None),
        {
            "_computer_id": "COMP",
            "_partition_id": "slappart0",
            "_request_dict": None,
            "_instance_guid": "COMP-slappart0",
            "_parameter_dict": {"ip_list": [("tap", "10.0.0.1")], "k": "v"},
        },
    )
    assert marshal.dumps([ours]).encode() == xml_marshaller.dumps([reference])
    decoded = marshal.loads(xml_marshaller.dumps(reference))
    assert decoded.cls == "ComputerPartition"
    assert decoded.args == ("COMP", "slappart0", None)
    assert decoded.state["_parameter_dict"]["ip_list"] == [("tap", "10.0.0.1")]


def test_refuses_foreign_classes() -> None:
    document = (
        '<marshal><object id="i2" module="os" class="system"><tuple/>'
        '<dictionary id="i3"/></object></marshal>'
    )
    with pytest.raises(MarshalError, match=r"refusing to unmarshall os\.system"):
        marshal.loads(document)
    with pytest.raises(MarshalError, match="refusing"):
        marshal.dumps(WireObject("Popen", module="subprocess"))


@pytest.mark.parametrize(
    "document",
    [
        "",
        "<marshal>",
        "<other/>",
        "<marshal><int>x</int></marshal>",
        "<marshal><dictionary><string>a</string></dictionary></marshal>",
        "<marshal><bogus/></marshal>",
        "<marshal><reference id='i9'/></marshal>",
        "<marshal><none/><none/></marshal>",
    ],
)
def test_bad_documents_raise_marshal_error(document: str) -> None:
    with pytest.raises(MarshalError):
        marshal.loads(document)


def test_accepts_namespaces_declarations_and_whitespace() -> None:
    document = (
        "<?xml version='1.0'?>\n<marshal:marshal xmlns:marshal='http://www.erp5.org/namespaces/"
        "marshaller'>\n <marshal:list id='i2'>\n  <marshal:string>a</marshal:string>\n"
        " </marshal:list>\n</marshal:marshal>"
    )
    assert marshal.loads(document) == ["a"]


def test_control_characters_are_refused() -> None:
    with pytest.raises(MarshalError):
        marshal.dumps("a\x01b")


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {"a": "1", "b": "x"},
        {"n": 1, "f": 1.5, "l": [1, 2]},
        {"q": "a\"b'c\n\td&<>", 'id"\n\t&': "v", "e": "", "u": "\u00e9\u20ac", "r": "x\ry"},
    ],
    ids=repr,
)
def test_dict2xml_matches_lxml(parameters: dict[str, Any]) -> None:
    assert instance_xml.dict2xml(parameters) == _lxml_dict2xml(parameters)
    expected = {str(k): (str(v) if v != "" else None) for k, v in parameters.items()}
    assert instance_xml.xml2dict(instance_xml.dict2xml(parameters)) == expected


def test_xml2dict_joins_repeated_ids() -> None:
    xml = '<instance><parameter id="a">x</parameter><parameter id="a">y</parameter></instance>'
    assert instance_xml.xml2dict(xml) == {"a": "x y"}
    assert instance_xml.xml2dict(None) == {}
