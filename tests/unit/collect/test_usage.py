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
from slapos.slap.exception import ConnectionError as SlapConnectionError

CONSUMPTION = b"""<consumption><movement><resource>cpu</resource><title>t</title>
<reference>x</reference><quantity>1.5</quantity><price>0</price><VAT/><category/>
</movement></consumption>"""


class FakeRelease:
    def __init__(self, url: str | None) -> None:
        self.url = url

    def getURI(self) -> str | None:
        return self.url


class FakePartition:
    def __init__(self, partition_id: str, free: bool = False) -> None:
        self.partition_id = partition_id
        self.free = free

    def getId(self) -> str:
        return self.partition_id

    def getState(self) -> str:
        return "destroyed" if self.free else "started"

    def getSoftwareRelease(self) -> FakeRelease:
        return FakeRelease(None if self.free else "https://example.com/software.cfg")


class FakeComputer:
    def __init__(
        self, partitions: list[str], fail: bool = False, free: tuple[str, ...] = ()
    ) -> None:
        self.partitions = [FakePartition(p, p in free) for p in partitions]
        self.reports: list[str] = []
        self.fail = fail

    def getComputerPartitionList(self) -> list[FakePartition]:
        return self.partitions

    def reportUsage(self, usage: str) -> None:
        if self.fail:
            raise SlapConnectionError("master down")
        self.reports.append(usage)


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
    computer = FakeComputer(["slappart0", "slappart1"])
    result = report_usage(config, computer)
    (journal,) = computer.reports
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
    result = report_usage(config, FakeComputer(["slappart0"], fail=True))
    assert a.exists() and result.failed == ["slappart0"] and result.sent == []


def test_nothing_to_send(tmp_path: Path) -> None:
    computer = FakeComputer(["slappart0"])
    assert report_usage(node_config(tmp_path), computer).sent == []
    assert computer.reports == []


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
    computer = FakeComputer(["slappart0", "slappart1"], free=("slappart1",))
    assert report_usage(config, computer).sent == []
    assert computer.reports == [] and leftover.exists()
