"""report_usage with a fake Computer (the wire is covered by the integration tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slapos.collect.usage import (
    InvalidReport,
    check_journal,
    check_partition_consumption,
    partition_journal,
    report_usage,
)
from slapos.config import NodeConfig
from tests.fakes.master import FakeComputer, FakePartition

CONSUMPTION = b"""<consumption><movement><resource>cpu</resource><title>t</title>
<reference>x</reference><quantity>1.5</quantity><price>0</price><VAT/><category/>
</movement></consumption>"""


def slap_computer(*partitions: str, free: tuple[str, ...] = (), fail: bool = False) -> FakeComputer:
    """The node's partitions as the master lists them: `free` ones destroyed, no release;
    with `fail`, usage reports are refused."""
    listed = [
        FakePartition(p, state="destroyed", url=None) if p in free else FakePartition(p)
        for p in partitions
    ]
    return FakeComputer(listed, refuse_usage=fail)


def node_config(tmp_path: Path) -> NodeConfig:
    return NodeConfig(
        path=tmp_path / "slapos.cfg",
        computer_id="COMP-3",
        master_url="http://127.0.0.1:1",
        software_root=tmp_path / "opt",
        instance_root=tmp_path / "srv",
    )


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_partition_reports_merged_into_one_journal(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    root = config.instance_root
    a = put(root / "slappart0" / "var" / "xml_report" / "r1", CONSUMPTION)
    b = put(root / "var" / "xml_report" / "slappart1" / "r2", CONSUMPTION)
    bad = put(root / "slappart1" / "var" / "xml_report" / "r3", b"<consumption/>")
    computer = slap_computer("slappart0", "slappart1")
    result = report_usage(config, computer)
    (journal,) = computer.usage
    root_element = check_journal(journal.encode())
    references = [m.findtext("reference") for m in root_element.iter("movement")]
    assert references == ["slappart0", "slappart1"]  # the partition, not the file's value
    transaction = root_element.find("transaction")
    assert transaction is not None and transaction.findtext("title") == "Resource consumptions"
    assert transaction.findtext("reference") == "COMP-3"
    assert sorted(result.sent) == sorted([a, b]) and result.invalid == [bad]
    assert not a.exists() and not b.exists() and bad.exists()


def test_refused_report_is_kept(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    a = put(config.instance_root / "slappart0" / "var" / "xml_report" / "r1", CONSUMPTION)
    result = report_usage(config, slap_computer("slappart0", fail=True))
    assert a.exists() and result.failed == ["slappart0"] and result.sent == []


def test_nothing_to_send(tmp_path: Path) -> None:
    computer = slap_computer("slappart0")
    assert report_usage(node_config(tmp_path), computer).sent == []
    assert computer.usage == []


@pytest.mark.parametrize(
    "document",
    [
        b"not xml",
        b"<consumption/>",
        b"<journal><transaction><start_date/></transaction></journal>",
        b"<consumption><movement><resource/><quantity>1</quantity><price>0</price><VAT/>"
        b"<extra/></movement></consumption>",
    ],
)
def test_invalid_documents(document: bytes) -> None:
    with pytest.raises(InvalidReport):
        if document.startswith(b"<journal"):
            check_journal(document)
        else:
            check_partition_consumption(document)


def test_partition_journal_shape() -> None:
    text = partition_journal("C", [("slappart9", check_partition_consumption(CONSUMPTION))])
    assert text.startswith('<?xml version="1.0"?><journal><transaction type="Sale Packing List">')
    check_journal(text.encode())


def test_free_partitions_are_not_billed(tmp_path: Path) -> None:
    config = node_config(tmp_path)
    leftover = put(config.instance_root / "slappart1" / "var" / "xml_report" / "r", CONSUMPTION)
    computer = slap_computer("slappart0", "slappart1", free=("slappart1",))
    assert report_usage(config, computer).sent == []
    assert computer.usage == [] and leftover.exists()
