"""computer_xml written with our codec, against upstream's writer (xml_marshaller + lxml)."""

from __future__ import annotations

import lxml.etree
import pytest
from xml_marshaller import xml_marshaller

from slapos.errors import ConfigError
from slapos.format.model import (
    Address,
    Computer,
    InterfaceSettings,
    Partition,
    User,
    VirtualInterface,
    dumps_xml,
    loads_xml,
    marshal,
)


def upstream_pretty(value: object) -> bytes:
    """What upstream's node format writes: xml_marshaller's document, pretty-printed by lxml."""
    root = lxml.etree.fromstring(xml_marshaller.dumps(value))
    result: bytes = lxml.etree.tostring(root, pretty_print=True)
    return result


COMPUTER = Computer(
    reference="COMP-1",
    software_root="/opt/slapgrid",
    instance_root="/srv/slapgrid",
    interface=InterfaceSettings("eth0", "10.0.0.0/16", "eth0", 16),
    partition_list=(
        Partition(
            reference="slappart0",
            path="/srv/slapgrid/slappart0",
            user=User("slapuser0", "/srv/slapgrid/slappart0", ("slapsoft",)),
            tap=VirtualInterface("slaptap0"),
            address_list=(Address("10.0.3.4", "255.255.255.255"),),
            capability_list=(),
        ),
        Partition(
            reference="slappart1",
            path="/srv/slapgrid/slappart1",
            user=User("slapuser1"),
            tap=VirtualInterface(""),
        ),
    ),
    address="2001:db8::1",
    netmask="ffff:ffff:ffff:ffff::",
    os_type='["Linux", "debian", "12", "Debian GNU/Linux"]',
    python_version="3.12.1",
    slapos_version="1.26.1",
)

ODD = {
    "empty": "",
    "containers": [{}, [], (), {"a": []}],
    "markup": "x&y<z>'\"",
    "unicode": "caf\u00e9 \u2603",
    "whitespace": "line\nbreak\ttab  ",
    "carriage": "cr\rhere",
    "scalars": [None, True, False, 0, -3, 1.5],
}


@pytest.mark.parametrize("value", [COMPUTER.to_dict(), ODD], ids=["computer", "odd"])
def test_computer_xml_is_byte_identical_to_upstreams(value):
    from slapos.format.model import pretty_xml
    from slapos.slap import marshal as codec

    assert pretty_xml(codec.dumps(value)) == upstream_pretty(value)


def test_the_posted_document_is_xml_marshallers():
    assert marshal(COMPUTER).encode() == xml_marshaller.dumps(COMPUTER.to_dict())


def test_what_we_write_reads_back_as_upstream_reads_it():
    data = dumps_xml(COMPUTER)
    assert loads_xml(data, "x") == xml_marshaller.loads(data) == COMPUTER.to_dict()
    odd = upstream_pretty(ODD)
    assert loads_xml(odd, "x") == xml_marshaller.loads(odd)


@pytest.mark.parametrize(
    "data",
    [b"<marshal><dictionary id='i2'>", b"not xml", b"<marshal><list id='i2'/></marshal>"],
)
def test_a_damaged_computer_xml_is_one_clear_error(data):
    with pytest.raises(ConfigError, match=r"^x: not a valid computer description"):
        loads_xml(data, "x")
