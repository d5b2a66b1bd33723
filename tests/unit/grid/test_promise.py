"""Legacy promises: results, wording of the failure, timeout, anomaly mode, periodicity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slapos.errors import PromiseError
from slapos.grid.promise import PromiseRun, check, run_promises
from slapos.system import Completed
from tests.fakes import FakeClock, FakeRunner
from tests.fakes.runner import Reply


def layout(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "etc" / "promise"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    (folder / "README").write_text("not executable")
    return tmp_path


def runner(results: dict[str, Reply]) -> FakeRunner:
    """Each promise script answers what `results` gives for its name."""
    return FakeRunner(default=lambda call: results[Path(call.argv[0]).name])


def test_first_failure_is_reported_as_upstream_words_it(tmp_path: Path) -> None:
    part = layout(tmp_path, "a-ok", "b-bad.sh", "c-bad")
    fake = runner({"a-ok": (0, "fine\n"), "b-bad.sh": (1, "port closed\n"), "c-bad": (3, "")})
    run = PromiseRun(part, "slappart0", 5, {})
    with pytest.raises(PromiseError) as exc:
        check(run, fake)
    assert str(exc.value) == "Promise 'b-bad.sh' failed with output: port closed"
    saved = json.loads((part / ".slapgrid/promise/result/b-bad.status.json").read_text())
    assert saved["result"]["failed"] is True
    assert saved["result"]["message"] == "port closed"
    assert saved["result"]["type"] == "Test Result"
    assert saved["name"] == "b-bad.sh" and saved["title"] == "b-bad"
    assert "exit status 3" in (part / ".slapgrid/promise/result/c-bad.status.json").read_text()
    assert "ERROR - port closed" in (part / ".slapgrid/promise/log/b-bad.log").read_text()


def test_timeout_message(tmp_path: Path) -> None:
    part = layout(tmp_path, "slow")
    run = PromiseRun(part, "slappart0", 7, {})
    with pytest.raises(PromiseError, match="Error: Promise timed out after 7 seconds"):
        check(run, runner({"slow": Completed(("slow",), -9, "", timed_out=True)}))


def test_anomaly_needs_three_failures_and_respects_periodicity(tmp_path: Path) -> None:
    part = layout(tmp_path, "flaky")
    fake = runner({"flaky": (1, "down")})
    anomaly = PromiseRun(part, "slappart0", 5, {}, force=False, anomaly=True)
    assert not run_promises(anomaly, fake, FakeClock(0))[0].failed
    # within 2 minutes and not forced: not run again, saved result reused
    [skipped] = run_promises(anomaly, fake, FakeClock(60))
    assert skipped.skipped and len(fake.calls) == 1
    assert not run_promises(anomaly, fake, FakeClock(200))[0].failed
    assert run_promises(anomaly, fake, FakeClock(400))[0].failed  # third failure in a row


def test_no_promises(tmp_path: Path) -> None:
    assert check(PromiseRun(tmp_path, "slappart0", 5, {}), FakeRunner()) == []
