"""Consumption reports to the master (node.md §9.1 steps 4-6): what `node report` sends.

* every partition's `var/xml_report/*` and `<instance_root>/var/xml_report/<partition>/*`
  that is a valid partition consumption document becomes part of one journal, posted with
  `useComputer`, and is deleted once the master took it;
* every `<instance_root>/var/xml_report/<computer_id>/*` (written by `node collect`) that is
  a valid journal is posted as is, and deleted once the master took it.

An invalid file is left where it is, with a warning, for inspection. A file the master did
not take stays for the next run (upstream deleted partition files before knowing).

The documents are checked in Python against upstream's two formats (`journal` and
`consumption`, element order and float quantities), rather than with XSD files.
"""

from __future__ import annotations

import logging
import time as _time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from slapos.config import NodeConfig
from slapos.errors import SlapOSError

log = logging.getLogger(__name__)


class UsageRelease(Protocol):
    def getURI(self) -> str: ...


class UsagePartition(Protocol):
    def getId(self) -> str: ...
    def getState(self) -> str: ...
    def getSoftwareRelease(self) -> UsageRelease: ...


class UsageComputer(Protocol):
    """What report_usage asks of the master: a subset of slapos.slap's Computer (and of
    slapos.grid.master's MasterComputer, which `node report` hands over)."""

    def getComputerPartitionList(self) -> Sequence[UsagePartition]: ...
    def reportUsage(self, computer_usage: str) -> None: ...


# (tag, min occurrences, max occurrences (0 = unbounded), content)
# content: "str", "float", or a nested spec (list) for an element with children.
Spec = list[tuple[str, int, int, Any]]

MOVEMENT: Spec = [
    ("resource", 1, 1, "str"),
    ("title", 0, 1, "str"),
    ("reference", 0, 1, "str"),
    ("quantity", 1, 1, "float"),
    ("price", 1, 1, "float"),
    ("VAT", 1, 1, "str"),
    ("category", 0, 0, "str"),
]
ARROW: Spec = [("source", 0, 1, "str"), ("destination", 0, 1, "str")]
TRANSACTION: Spec = [
    ("title", 0, 1, "str"),
    ("start_date", 1, 1, "str"),
    ("stop_date", 1, 1, "str"),
    ("reference", 1, 1, "str"),
    ("currency", 1, 1, "str"),
    ("payment_mode", 1, 1, "str"),
    ("category", 0, 0, "str"),
    ("arrow", 1, 0, ARROW),
    ("movement", 1, 0, MOVEMENT),
]
#: elements that must carry a `type` attribute.
_TYPED = {"transaction", "arrow"}


class InvalidReport(SlapOSError):
    """A usage document that is not in the expected format."""


def _check(element: ET.Element, spec: Spec, where: str) -> None:
    children = list(element)
    i = 0
    for tag, low, high, content in spec:
        seen = 0
        while i < len(children) and children[i].tag == tag:
            child = children[i]
            if tag in _TYPED and child.get("type") is None:
                raise InvalidReport(f"{where}/{tag}: the type attribute is missing")
            if isinstance(content, list):
                _check(child, content, f"{where}/{tag}")
            else:
                if len(child):
                    raise InvalidReport(f"{where}/{tag}: unexpected child elements")
                if content == "float":
                    try:
                        float((child.text or "").strip())
                    except ValueError:
                        raise InvalidReport(
                            f"{where}/{tag}: {child.text!r} is not a number"
                        ) from None
            seen += 1
            i += 1
            if high and seen >= high:
                break
        if seen < low:
            raise InvalidReport(f"{where}: <{tag}> expected")
    if i < len(children):
        raise InvalidReport(f"{where}: unexpected <{children[i].tag}>")


def _parse(data: bytes) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidReport(f"not well-formed XML: {exc}") from None


def check_journal(data: bytes) -> ET.Element:
    """Parse and check a computer consumption journal; raises InvalidReport."""
    root = _parse(data)
    if root.tag != "journal":
        raise InvalidReport(f"root element is <{root.tag}>, expected <journal>")
    _check(root, [("transaction", 1, 0, TRANSACTION)], "journal")
    for transaction in root:
        if transaction.get("type") is None:
            raise InvalidReport("journal/transaction: the type attribute is missing")
    return root


def check_partition_consumption(data: bytes) -> ET.Element:
    """Parse and check a partition consumption document; raises InvalidReport."""
    root = _parse(data)
    if root.tag != "consumption":
        raise InvalidReport(f"root element is <{root.tag}>, expected <consumption>")
    _check(root, [("movement", 1, 0, MOVEMENT)], "consumption")
    return root


def partition_journal(computer_id: str, usages: Sequence[tuple[str, ET.Element]]) -> str:
    """One journal of every partition movement, each movement's reference = its partition."""
    journal = ET.Element("journal")
    transaction = ET.SubElement(journal, "transaction", type="Sale Packing List")
    for tag, text in (
        ("title", "Resource consumptions"),
        ("start_date", ""),
        ("stop_date", _time.strftime("%Y-%m-%d at %H:%M:%S")),
        ("reference", computer_id),
        ("currency", ""),
        ("payment_mode", ""),
        ("category", ""),
    ):
        ET.SubElement(transaction, tag).text = text
    arrow = ET.SubElement(transaction, "arrow", type="Administration")
    ET.SubElement(arrow, "source")
    ET.SubElement(arrow, "destination")
    for partition_id, consumption in usages:
        for movement in consumption.findall("movement"):
            copy = ET.SubElement(transaction, "movement")
            for child in movement:
                ET.SubElement(copy, child.tag).text = (
                    partition_id if child.tag == "reference" else child.text
                )
    return '<?xml version="1.0"?>' + ET.tostring(journal, encoding="unicode")


@dataclass
class UsageResult:
    """What report_usage sent, left and failed."""

    sent: list[Path] = field(default_factory=list)
    invalid: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # partition ids whose usage was not taken


def _files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def report_usage(config: NodeConfig, computer: UsageComputer) -> UsageResult:
    """Send pending consumption reports of this node to the master (`useComputer`).

    `computer` is a slapos.slap Computer (a UsageComputer); its partitions tell where to
    look. Never raises for one bad file or one refused post: those are logged and kept for
    the next run.
    """
    result = UsageResult()
    _send_journals(config, computer, result)
    usages, consumed = _partition_usages(config, computer, result)
    if usages:
        journal = partition_journal(config.computer_id, usages)
        try:
            check_journal(journal.encode())
            computer.reportUsage(journal)
        except SlapOSError as exc:
            log.warning("cannot report partition usage: %s", exc)
            result.failed.extend(sorted({pid for pid, _ in usages}))
        else:
            log.info("sent usage of %d partition reports", len(consumed))
            for path in consumed:
                path.unlink(missing_ok=True)
            result.sent.extend(consumed)
    return result


def _partition_usages(
    config: NodeConfig, computer: UsageComputer, result: UsageResult
) -> tuple[list[tuple[str, ET.Element]], list[Path]]:
    root = config.instance_root
    usages: list[tuple[str, ET.Element]] = []
    consumed: list[Path] = []
    try:
        partitions = computer.getComputerPartitionList()
    except SlapOSError as exc:
        log.warning("cannot list partitions for usage reports: %s", exc)
        return usages, consumed
    for cp in partitions:
        try:
            partition_id = cp.getId()
            if _is_free(cp):
                continue  # nothing runs there: nothing to bill (upstream's filter)
        except SlapOSError:
            continue
        folders = (
            root / partition_id / "var" / "xml_report",
            root / "var" / "xml_report" / partition_id,
        )
        for path in (p for folder in folders for p in _files(folder)):
            try:
                usages.append((partition_id, check_partition_consumption(path.read_bytes())))
                consumed.append(path)
            except InvalidReport as exc:
                log.warning(
                    "usage report %s is not valid (%s): left there for inspection", path, exc
                )
                result.invalid.append(path)
            except OSError as exc:
                log.warning("cannot read usage report %s: %s", path, exc)
    return usages, consumed


def _is_free(cp: UsagePartition) -> bool:
    """A destroyed partition with no software release is free."""
    if cp.getState() != "destroyed":
        return False
    try:
        url = cp.getSoftwareRelease().getURI()
    except (SlapOSError, TypeError, AttributeError):
        url = None
    return not url


def _send_journals(config: NodeConfig, computer: UsageComputer, result: UsageResult) -> None:
    """The collector's daily journals, each posted as is."""
    for path in _files(config.instance_root / "var" / "xml_report" / config.computer_id):
        try:
            data = path.read_bytes()
            check_journal(data)
        except InvalidReport as exc:
            log.warning("consumption journal %s is not valid (%s): left there", path, exc)
            result.invalid.append(path)
            continue
        except OSError as exc:
            log.warning("cannot read consumption journal %s: %s", path, exc)
            continue
        try:
            computer.reportUsage(data.decode("utf-8"))
        except SlapOSError as exc:
            log.warning("master did not take consumption journal %s: %s", path.name, exc)
            continue
        log.info("sent consumption journal %s", path.name)
        _mark_uploaded(config, path)
        result.sent.append(path)


def _mark_uploaded(config: NodeConfig, path: Path) -> None:
    """Delete the sent copy; the collector's own copy becomes `<day>.xml.uploaded`."""
    original = config.instance_root / "var" / "consumption-report" / path.name
    path.unlink(missing_ok=True)
    if original.exists():
        original.rename(original.with_name(original.name + ".uploaded"))
