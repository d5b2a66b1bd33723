"""The codec against documents captured from upstream 1.26.1 traffic (tests/data/wire/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slapos.slap import ComputerPartition, SoftwareInstance, wire
from slapos.slap.slap import Computer, SoftwareRelease, build_request_dict

TRAFFIC = json.loads(
    (Path(__file__).parents[2] / "data" / "wire" / "upstream-1.26.1-traffic.json").read_text()
)
ANSWERS = [r for r in TRAFFIC if str(r.get("body", "")).startswith("<marshal>")]
FORM_DOCUMENTS = [
    (r["path"], key, value)
    for r in TRAFFIC
    for key, value in (r.get("data") or {}).items()
    if isinstance(value, str) and value.startswith("<marshal>")
]


def test_capture_covers_the_interesting_calls():
    paths = {r["path"] for r in ANSWERS}
    assert {
        "getFullComputerInformation",
        "registerComputerPartition",
        "requestComputerPartition",
        "getComputerPartitionCertificate",
        "getSoftwareReleaseListFromSoftwareProduct",
    } <= paths
    assert len(FORM_DOCUMENTS) > 20


@pytest.mark.parametrize("record", ANSWERS, ids=lambda r: r["path"])
def test_answers_round_trip_byte_for_byte(record):
    value = wire.loads(record["body"])
    assert wire.dumps(value) == record["body"]


@pytest.mark.parametrize("path,key,document", FORM_DOCUMENTS, ids=lambda x: str(x)[:40])
def test_form_documents_round_trip_byte_for_byte(path, key, document):
    assert wire.dumps(wire.loads(document)) == document


def test_full_computer_information_decodes_to_our_classes():
    record = next(r for r in ANSWERS if r["path"] == "getFullComputerInformation")
    computer = wire.loads(record["body"])
    assert isinstance(computer, Computer)
    partitions = computer._computer_partition_list
    assert all(isinstance(p, ComputerPartition) for p in partitions)
    busy = partitions[0]
    assert busy.getId() == "slappart0"
    assert busy.getState() == "started"
    assert busy.getType() == "web"
    params = busy.getInstanceParameterDict()
    # the double-escaped string of protocol.md §4.3 comes back intact
    assert params["weird"] == "a&b<c>\"d' \u00e9 \u20ac\n\ttab"
    assert params["ip_list"] == [("slaptap0", "10.0.0.10"), ("slaptap0", "fd46::10")]
    assert params["slave_instance_list"][0]["slave_reference"] == "_MyShared"
    release = busy.getSoftwareRelease()
    assert isinstance(release, SoftwareRelease)
    assert release.getURI() == "https://example.invalid/software/demo/software.cfg"
    assert release.getState() == "available"
    states = {r.getURI(): r.getState() for r in computer._software_release_list}
    assert states["https://example.invalid/software/old/software.cfg"] == "destroyed"


def test_request_answers_decode_to_software_instances():
    answers = [wire.loads(r["body"]) for r in ANSWERS if r["path"] == "requestComputerPartition"]
    assert all(isinstance(a, SoftwareInstance) for a in answers)
    assert answers[-1]._connection_dict == {"k": "v", "url": "http://r.example.invalid"}


@pytest.mark.parametrize(
    "record",
    [r for r in TRAFFIC if r["path"] == "requestComputerPartition"],
    ids=lambda r: r["data"]["partition_reference"],
)
def test_we_build_the_same_request_forms(record):
    data = record["data"]
    ours = build_request_dict(
        data["software_release"],
        data["partition_reference"],
        wire.loads(data["partition_parameter_xml"]),
        data["software_type"],
        wire.loads(data["filter_xml"]),
        wire.loads(data["state"]),
        wire.loads(data["shared_xml"]),
    )
    expected = {k: v for k, v in data.items() if k not in ("computer_id", "computer_partition_id")}
    assert ours == expected


def test_double_escaping():
    text = "a&b<c>\"d' \u00e9 \u20ac\n\ttab"
    document = wire.dumps(text)
    assert document == (
        "<marshal><string>a&amp;amp;b&amp;lt;c&amp;gt;\"d' &#233; &#8364;\n\ttab</string></marshal>"
    )
    assert wire.loads(document) == text


def test_references_and_key_order():
    shared = [1]
    document = wire.dumps({"y": shared, "x": shared})
    assert document == (
        '<marshal><dictionary id="i2"><string>x</string><list id="i3"><int>1</int></list>'
        '<string>y</string><reference id="i3"/></dictionary></marshal>'
    )
    value = wire.loads(document)
    assert value["x"] is value["y"]


def test_scalars():
    values: tuple[object, ...] = (None, True, False, 0, -5, 10**30, 1.5, "", (), ("a", 1), [], {})
    for value in values:
        assert wire.loads(wire.dumps(value)) == value
    assert wire.dumps(None) == "<marshal><none/></marshal>"
    assert wire.dumps(False) == "<marshal><bool>0</bool></marshal>"


class Evil:
    pass


def test_refuses_foreign_classes():
    with pytest.raises(wire.WireError, match="refusing to marshall"):
        wire.dumps(Evil())
    document = (
        '<marshal><object id="i2" module="os" class="system"><tuple><string>id</string></tuple>'
        '<dictionary id="i3"/></object></marshal>'
    )
    with pytest.raises(wire.WireError, match=r"refusing to unmarshall os\.system"):
        wire.loads(document)


@pytest.mark.parametrize(
    "document",
    [
        "",
        "not xml",
        "<marshal><string>unterminated</marshal>",
        "<html><body>500</body></html>",
        "<marshal><bogus/></marshal>",
    ],
)
def test_malformed_documents(document):
    with pytest.raises(wire.WireError):
        wire.loads(document)


def test_instance_xml():
    xml = wire.dict_to_instance_xml({"b": "x", "a": 1})
    assert xml == (
        "<?xml version='1.0' encoding='utf-8'?>\n<instance>\n"
        '  <parameter id="a">1</parameter>\n  <parameter id="b">x</parameter>\n</instance>\n'
    )
    assert wire.instance_xml_to_dict(xml) == {"a": "1", "b": "x"}
    assert wire.dict_to_instance_xml({}) == "<?xml version='1.0' encoding='utf-8'?>\n<instance/>\n"
    assert wire.instance_xml_to_dict(None) == {}
    repeated = (
        '<instance><parameter id="a">1</parameter><parameter id="a">2</parameter>'
        '<parameter id="e"></parameter></instance>'
    )
    assert wire.instance_xml_to_dict(repeated) == {"a": "1 2", "e": None}
    with pytest.raises(wire.WireError):
        wire.instance_xml_to_dict("<instance>")


def test_json_in_xml():
    wrapped = wire.wrap_json_in_xml({"a": [1, 2], "b": "x"})
    assert list(wrapped) == ["_"]
    assert json.loads(wrapped["_"]) == {"a": [1, 2], "b": "x"}
    assert wire.wrap_json_in_xml({"_": '{"z": 1}'}) == {"_": '{"z": 1}'}
    assert wire.unwrap_json_in_xml(wrapped) == {"a": [1, 2], "b": "x"}
    assert wire.unwrap_json_in_xml({"a": "1"}) == {"a": "1"}
    assert wire.unwrap_json_in_xml({"_": "not json"}) == {"_": "not json"}


def test_partition_authorization():
    assert wire.partition_authorization("COMP-1", "slappart0") == (
        "X-SlapPartition computer_id=COMP-1, computer_partition_id=slappart0"
    )
