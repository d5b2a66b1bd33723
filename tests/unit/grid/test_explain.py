"""`node explain`: hints for the failures we recognise, logs, the rendered explanation."""

from __future__ import annotations

from pathlib import Path

import pytest

from slapos.cli.node.explain import render
from slapos.grid.explain import explain, hint_for, partitions_of, tail
from slapos.grid.runrecord import RunRecord, Step

#: Lines real tools print for each failure (zc.buildout, slapos.recipe.build, gcc,
#: configure, pip, Python, coreutils), and the hint each must get.
REAL_LINES = [
    (
        "Error: MD5 checksum mismatch downloading 'https://example.org/x.tar.gz'",
        "checksum-mismatch",
    ),
    ("Error: sha256 checksum does not match for /srv/cache/x.tar.gz", "checksum-mismatch"),
    (
        "urllib.error.URLError: <urlopen error [Errno -3] Temporary failure in name resolution>",
        "network-unreachable",
    ),
    ("OSError: [Errno 101] Network is unreachable", "network-unreachable"),
    ("Couldn't download 'https://pypi.org/simple/six/'", "network-unreachable"),
    ("configure: error: C compiler cannot create executables", "missing-build-tool"),
    ("/bin/sh: 1: gcc: not found", "missing-build-tool"),
    ("fatal error: zlib.h: No such file or directory", "missing-build-tool"),
    ("Package libffi was not found. No package 'libffi' found", "missing-build-tool"),
    ("OSError: [Errno 98] Address already in use", "port-in-use"),
    ("OSError: [Errno 28] No space left on device", "disk-full"),
    ("not enough free space for slappart0: 12.0 MiB available", "disk-full"),
    (
        "PermissionError: [Errno 13] Permission denied: '/srv/slapgrid/slappart0/etc'",
        "permission-denied",
    ),
]


@pytest.mark.parametrize(("line", "name"), REAL_LINES)
def test_hints_for_real_messages(line: str, name: str) -> None:
    found = hint_for(f"Installing web.\n{line}\n")
    assert found is not None and found[0] == name


def test_no_hint_for_an_unknown_failure() -> None:
    assert hint_for("Error: instance failed on purpose (fail-buildout)") is None


def partition(tmp_path: Path, record: RunRecord | None, log: str = "") -> Path:
    path = tmp_path / "inst" / record.partition_id if record else tmp_path / "inst" / "slappart9"
    (path / ".slapgrid" / "log").mkdir(parents=True)
    if log:
        (path / ".slapgrid" / "log" / "instance.log").write_text(log)
    if record is not None:
        record.write(path / ".slapgrid")
    return path


def test_explained_buildout_failure(tmp_path: Path) -> None:
    log = "".join(f"line {i}\n" for i in range(40)) + "Error: MD5 checksum mismatch for x\n"
    record = RunRecord(
        "slappart0",
        "failed",
        1000.0,
        requested_state="started",
        software_type="default",
        error="buildout failed in ...: MD5 checksum mismatch for x",
        step=Step("buildout", name="download", command="bin/buildout -U", message="MD5 ..."),
    )
    path = partition(tmp_path, record, log)
    assert RunRecord.read(path / ".slapgrid") is not None
    e = explain(path, "/etc/opt/slapos/slapos.cfg")
    assert e.failing and e.hint_name == "checksum-mismatch"
    assert e.log_tail is not None and len(e.log_tail) == 30
    assert e.log_tail[-1] == "Error: MD5 checksum mismatch for x"
    text = render(e, 1000.0 + 7200)
    assert text.startswith(
        "slappart0 [default] started: FAILED, last run 1970-01-01 00:16:40 UTC (2h ago)\n"
    )
    assert "  step      buildout part 'download': MD5 ...\n  command   bin/buildout -U\n" in text
    assert "  hint      a download did not match its checksum" in text
    assert (
        "  rerun     slapos node instance --cfg /etc/opt/slapos/slapos.cfg --only-cp slappart0"
        in text
    )
    assert text.count("\n    | ") == 30
    # the rerun line is a shell command: a configuration path with a space stays one word
    spaced = explain(path, "/srv/my node/slapos.cfg")
    assert spaced.rerun.startswith("slapos node instance --cfg '/srv/my node/slapos.cfg' ")


def test_healthy_and_unrecorded_partitions(tmp_path: Path) -> None:
    ok = partition(tmp_path, RunRecord("slappart0", "skipped", 5.0, requested_state="started"))
    e = explain(ok, "c")
    assert not e.failing and e.log_tail is None
    assert render(e, 5.0).startswith("slappart0 started: up to date, last run ")
    none = partition(tmp_path, None)
    assert "no run recorded yet" in render(explain(none, "c"), 0)
    (tmp_path / "inst" / "slappart10").mkdir()
    assert [p.name for p in partitions_of(tmp_path / "inst")] == [
        "slappart0",
        "slappart9",
        "slappart10",
    ]
    assert tail(tmp_path / "missing") is None
