from __future__ import annotations

import pytest

from slapos.config import IniFile
from slapos.format.config import FormatInputError, load_format_config

BASE = """\
[slapos]
computer_id = COMP-1
master_url = http://127.0.0.1:1
instance_root = /srv/x
software_root = /opt/x
[slapformat]
interface_name = eth0
ipv4_local_network = 10.0.0.0/16
partition_amount = 3
computer_xml = /opt/x.xml
"""


def load(text: str, **overrides):
    return load_format_config(IniFile.parse(text, "slapos.cfg"), overrides)


def test_defaults_and_overrides():
    config = load(BASE, alter_user=False)
    assert config.partition_amount == 3
    assert config.create_tap is True and config.create_tun is False
    assert config.alter_user is False and config.alter_network is True
    assert config.partition_reference(2) == "slappart2" and config.partition_user(0) == "slapuser0"
    assert config.ipv6_interface_name == "eth0"


def test_slapos_section_wins_over_slapformat():
    config = load(
        BASE.replace("software_root = /opt/x", "software_root = /opt/x\npartition_amount = 5")
    )
    assert config.partition_amount == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("partition_amount = 3", "partition_amount = three"), "must be a whole number"),
        (("10.0.0.0/16", "10.0.0.0/99"), "ipv4_local_network is not an IPv4 network"),
        (("10.0.0.0/16", "nonsense"), "ipv4_local_network is not an IPv4 network"),
        (("interface_name = eth0", "interface_name = eth0\nbridge_name = br0"), "obsolete"),
        (("interface_name = eth0", "interface_name = eth0\ncreate_tap = maybe"), "true or false"),
        (("computer_xml = /opt/x.xml", ""), "computer_xml is not defined"),
        (("interface_name = eth0", "interface_name = eth0\nipv6_prefixshift = 2"), "too small"),
        (("interface_name = eth0", ""), "interface_name is not defined"),
    ],
)
def test_bad_input_names_the_key(change, message):
    with pytest.raises(FormatInputError, match=message) as info:
        load(BASE.replace(*change))
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 1


def test_the_master_is_reached_with_the_key_and_certificate_only_as_a_pair(tmp_path):
    key, cert, ca = tmp_path / "k.key", tmp_path / "c.crt", tmp_path / "ca.pem"
    for path in (key, cert, ca):
        path.write_text("")
    tls = f"master_ca_file = {ca}\nmaster_tls_verify = false\n"
    alone = load(BASE.replace("[slapformat]", f"key_file = {key}\n{tls}[slapformat]"))
    assert (alone.master.key_file, alone.master.cert_file) == (None, None)
    assert alone.master.ca_file == str(ca) and alone.master.tls_verify is False
    pair = load(BASE.replace("[slapformat]", f"key_file = {key}\ncert_file = {cert}\n[slapformat]"))
    assert (pair.master.key_file, pair.master.cert_file) == (str(key), str(cert))
    assert pair.master.url == "http://127.0.0.1:1" and pair.master.timeout == 60
