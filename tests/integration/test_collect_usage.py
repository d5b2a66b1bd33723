"""Usage reports (`slapos.collect.usage.report_usage`, called by `node report`) sent to a
real master: our proxy and upstream's. Our journals are also checked against upstream's
own XML schemas (read from the upstream installation at test time).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from slapos.collect.db import CollectorDB
from slapos.collect.report import consumption_journal
from slapos.collect.usage import partition_journal, report_usage
from slapos.config import NodeConfig
from tests.fixtures.slap import format_computer
from tests.fixtures.upstream import RunningProxy, Upstream

PARTITION_USAGE = b"""<?xml version="1.0" encoding="utf-8"?>
<consumption>
  <movement>
    <resource>CPU Consumption</resource>
    <title>CPU consumption of the partition</title>
    <reference>anything</reference>
    <quantity>42.5</quantity>
    <price>0.0</price>
    <VAT>1</VAT>
    <category>cpu</category>
  </movement>
</consumption>
"""


def _journal(tmp_path: Path, computer_id: str, day: str) -> bytes:
    (tmp_path / "db").mkdir()
    with CollectorDB.open(tmp_path / "db") as db:
        db.insert("system", [(1, 25, 100, 100, 0, 0, 0, 0, 0, 0, day, "10:00:00")])
        db.insert("user", [("slapuser0", 1, "1-1", 12.5, 1, 1, 1, 2**21, 0, 0, day, "10:00:00")])
        db.commit()
        return consumption_journal(db, computer_id, ["slapuser0", "slapuser1"], day)


def test_report_usage_accepted_by_master(any_proxy: RunningProxy, tmp_path: Path) -> None:
    from slapos.slap import slap

    format_computer(any_proxy.url, any_proxy.computer_id, partitions=2)
    s = slap()
    s.initializeConnection(any_proxy.url, timeout=10)
    software = "https://example.com/software.cfg"
    s.registerSupply().supply(software, computer_guid=any_proxy.computer_id)
    used = s.registerOpenOrder().request(software, "billed").getId()
    free = ({"slappart0", "slappart1"} - {used}).pop()
    root = tmp_path / "srv"
    config = NodeConfig(
        path=tmp_path / "slapos.cfg",
        computer_id=any_proxy.computer_id,
        master_url=any_proxy.url,
        software_root=tmp_path / "opt",
        instance_root=root,
    )
    good = root / used / "var" / "xml_report" / "slapreport.1"
    bad = root / "var" / "xml_report" / used / "slapreport.2"
    ignored = root / free / "var" / "xml_report" / "slapreport.3"  # a free partition
    for path, data in (
        (good, PARTITION_USAGE),
        (bad, b"<consumption><oops/></consumption>"),
        (ignored, PARTITION_USAGE),
    ):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    day = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    journal = _journal(tmp_path, any_proxy.computer_id, day)
    collected = root / "var" / "xml_report" / any_proxy.computer_id / f"{day}.xml"
    original = root / "var" / "consumption-report" / f"{day}.xml"
    for path in (collected, original):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(journal)

    result = report_usage(config, s.registerComputer(any_proxy.computer_id))

    assert sorted(result.sent) == sorted([good, collected])
    assert result.invalid == [bad] and result.failed == []
    assert not good.exists() and not collected.exists()
    assert bad.exists() and ignored.exists()  # left for inspection / not billed
    assert not original.exists() and original.with_name(f"{day}.xml.uploaded").exists()


def test_report_usage_keeps_files_when_master_is_down(tmp_path: Path) -> None:
    from slapos.slap import slap

    root = tmp_path / "srv"
    config = NodeConfig(
        path=tmp_path / "slapos.cfg",
        computer_id="COMP-1",
        master_url="http://127.0.0.1:9",
        software_root=tmp_path / "opt",
        instance_root=root,
    )
    collected = root / "var" / "xml_report" / "COMP-1" / "2020-01-01.xml"
    collected.parent.mkdir(parents=True)
    collected.write_bytes(_journal(tmp_path, "COMP-1", "2020-01-01"))
    s = slap()
    s.initializeConnection("http://127.0.0.1:9", timeout=5)
    result = report_usage(config, s.registerComputer("COMP-1"))
    assert result.sent == [] and collected.exists()


def test_journals_match_upstream_schema(upstream: Upstream, tmp_path: Path) -> None:
    from lxml import etree

    xsd_dir = next(upstream.venv.glob("lib/python3*/site-packages/slapos/slap/doc"))
    computer = etree.XMLSchema(etree.parse(str(xsd_dir / "computer_consumption.xsd")))
    partition = etree.XMLSchema(etree.parse(str(xsd_dir / "partition_consumption.xsd")))
    assert partition.validate(etree.fromstring(PARTITION_USAGE))
    journal = _journal(tmp_path, "COMP-9", "2020-01-01")
    assert computer.validate(etree.fromstring(journal)), computer.error_log
    from slapos.collect.usage import check_partition_consumption

    merged = partition_journal(
        "COMP-9", [("slappart0", check_partition_consumption(PARTITION_USAGE))]
    )
    assert computer.validate(etree.fromstring(merged.encode())), computer.error_log


@pytest.mark.parametrize(
    "document",
    [
        b"<journal/>",
        b"<consumption><movement><resource>r</resource><quantity>x</quantity>"
        b"<price>0</price><VAT/></movement></consumption>",
        b"<consumption><movement><resource>r</resource><quantity>1</quantity>"
        b"<VAT/></movement></consumption>",
    ],
)
def test_invalid_documents_rejected_like_upstream_schema(
    upstream: Upstream, document: bytes
) -> None:
    """What our checker refuses, upstream's XSDs refuse too."""
    from lxml import etree

    from slapos.collect.usage import InvalidReport, check_journal, check_partition_consumption

    xsd_dir = next(upstream.venv.glob("lib/python3*/site-packages/slapos/slap/doc"))
    name = "computer" if document.startswith(b"<journal") else "partition"
    schema = etree.XMLSchema(etree.parse(str(xsd_dir / f"{name}_consumption.xsd")))
    assert not schema.validate(etree.fromstring(document))
    checker = check_journal if name == "computer" else check_partition_consumption
    with pytest.raises(InvalidReport):
        checker(document)


def test_node_report_sends_what_collect_wrote(
    any_proxy: RunningProxy,
    recording_master,
    instance_node_factory,  # type: ignore[no-untyped-def]
) -> None:
    """`slapos node report` (the command) posts collect's journal and removes it."""
    from slapos.collect.usage import check_journal

    master = recording_master(any_proxy)
    node = instance_node_factory(master, partitions=1)
    day = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    journal = node.instance_root / "var" / "xml_report" / master.computer_id / f"{day}.xml"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(_journal(node.base, master.computer_id, day))
    done = node.slapos("node", "report")
    assert done.returncode == 0, done.stderr
    (posted,) = master.posted("useComputer")
    assert posted["computer_id"] == master.computer_id
    root = check_journal(posted["use_string"].encode())
    assert root.find("transaction/reference").text == f"{day}-global"  # type: ignore[union-attr]
    assert not journal.exists()
