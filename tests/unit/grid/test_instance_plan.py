"""The planner of `node instance`: decisions and reasons from observations (pure)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from slapos.cli.node.dry_run import render_node_plan
from slapos.grid.instance_plan import (
    NodePlan,
    Observation,
    Options,
    diff_parameters,
    plan_partition,
)
from slapos.grid.runrecord import Applied, RunRecord, Step, buildout_part, promise_step

NOW = 1_000_000.0
URL = "http://sr/software.cfg"


def observed(**kw: object) -> Observation:
    base = Observation(
        partition_id="slappart0",
        requested_state="started",
        software_url=URL,
        software_type="default",
        parameters={"timestamp": "2", "a": "1"},
        directory_exists=True,
        local_timestamp="2",
        local_timestamp_mtime=NOW - 10,
        periodicity=86400,
        applied=Applied("started", URL, "default", {"timestamp": "2", "a": "1"}, "2"),
        services={"web": "RUNNING"},
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def codes(obs: Observation, options: Options | None = None) -> tuple[str, list[str]]:
    plan = plan_partition(obs, options or Options(), NOW)
    return plan.action, [r.code for r in plan.reasons]


def test_up_to_date_is_skipped_and_promises_checked() -> None:
    plan = plan_partition(observed(), Options(), NOW)
    assert plan.action == "skip" and plan.check_promises and not plan.changes_something
    assert plan.services == "keep" and plan.master == ("anomaly-check",)
    stopped = plan_partition(observed(services={"web": "EXITED"}), Options(), NOW)
    assert "this run does not restart web" in stopped.services_detail
    seen = RunRecord("slappart0", "skipped", NOW, step=Step("promise", "check", message="down"))
    still = plan_partition(observed(last_run=seen), Options(), NOW)
    assert [(r.code, r.text) for r in still.reasons] == [
        ("up-to-date", "up to date"),
        ("still-failing", "last run: promise check: down"),
    ]


def test_each_reason() -> None:
    assert codes(observed(parameters={"a": "1"})) == ("process", ["no-timestamp"])
    assert codes(observed(periodicity=0)) == ("process", ["periodicity"])
    assert codes(observed(local_timestamp_mtime=NOW - 86401)) == ("process", ["periodicity-due"])
    assert codes(observed(periodicity=-1, local_timestamp_mtime=0)) == ("skip", ["up-to-date"])
    assert codes(observed(), Options(force=True)) == ("process", ["force"])
    assert codes(observed(), Options(force_stop=True)) == ("process", ["force-stop"])
    never = observed(local_timestamp=None, applied=None)
    assert codes(never) == ("process", ["never-processed"])
    failed = RunRecord("slappart0", "failed", NOW, error="buildout failed: boom")
    assert codes(replace(never, last_run=failed)) == ("process", ["last-run-failed"])
    promised = RunRecord("slappart0", "promise-failed", NOW, error="Promise 'p' failed")
    assert codes(replace(never, last_run=promised)) == ("process", ["promise-failed"])


def test_what_changed_since_the_last_processing() -> None:
    bumped = {"timestamp": "3", "a": "1"}
    assert codes(observed(parameters=bumped)) == ("process", ["changed"])
    changed = observed(
        parameters={"timestamp": "3", "a": "2", "password": "new"},
        requested_state="stopped",
        software_url="http://sr/v2.cfg",
    )
    plan = plan_partition(changed, Options(), NOW)
    assert [r.code for r in plan.reasons] == ["software-release", "state", "parameters"]
    assert [(c.key, c.old, c.new) for c in plan.reasons[2].changes] == [
        ("a", "1", "2"),
        ("password", None, "***"),
    ]
    assert plan.services == "stop" and plan.master == ("connection-parameters", "stopped")
    # no record of the last processing (first run of this version): the timestamp says it
    assert codes(replace(changed, applied=None)) == ("process", ["changed"])


def test_parameters_diff_masks_secrets_and_opens_serialised_json() -> None:
    old = {"_": json.dumps({"port": 80, "admin-password": "x"}), "ip_list": [("tap", "1")]}
    new = {"_": json.dumps({"port": 81, "admin-password": "y"}), "ip_list": [["tap", "1"]]}
    changes = diff_parameters(old, new)
    assert [(c.key, c.old, c.new) for c in changes] == [
        ("_.admin-password", "***", "***"),
        ("_.port", "80", "81"),
    ]
    long = diff_parameters({}, {"text": "x" * 100})
    assert long[0].new is not None and long[0].new.endswith("...") and len(long[0].new) == 60


def test_free_missing_directory_and_missing_release() -> None:
    free = observed(requested_state="destroyed", software_url=None)
    assert codes(free) == ("free", [])
    assert codes(replace(free, dirty_free=True)) == ("free", ["clean"])
    assert codes(observed(directory_exists=False)) == ("fail", ["no-directory"])
    unreadable = plan_partition(observed(readable=False), Options(), NOW)
    assert (unreadable.action, unreadable.changes_something) == ("unknown", True)
    missing = plan_partition(
        observed(software_installed=False, local_timestamp=None), Options(), NOW
    )
    assert missing.action == "process" and "is not installed" in missing.expected_failure
    assert missing.master == ("error",)


def test_destroyed_stops_services_and_reports_stopped() -> None:
    plan = plan_partition(
        observed(requested_state="destroyed", local_timestamp=None), Options(), NOW
    )
    assert plan.services == "stop" and plan.master == ("stopped",)
    assert "node report' then destroys" in plan.services_detail


def test_rendered_plan() -> None:
    result = NodePlan("COMP-1", "http://master/")
    result.partitions.append(
        plan_partition(observed(parameters={"timestamp": "3", "a": "2"}), Options(), NOW)
    )
    result.partitions.append(plan_partition(observed(partition_id="slappart1"), Options(), NOW))
    result.partitions.append(
        plan_partition(
            observed(partition_id="slappart2", requested_state="destroyed", software_url=None),
            Options(),
            NOW,
        )
    )
    text = render_node_plan(result)
    assert "slappart0 [default] started: process\n  why       parameters changed: a\n" in text
    assert "              a: '1' -> '2'\n" in text
    assert "slappart1 [default] started: skip" in text
    assert "free: slappart2" in text
    assert text.endswith(
        "1 to process, 1 up to date, 1 free: a real run would change something (exit 4)\n"
    )
    assert "\033[" not in text and "\033[1;33mprocess" in render_node_plan(result, colour=True)
    data = result.to_dict()
    assert data["changes_something"] is True
    assert [p["action"] for p in data["partitions"]] == ["process", "skip", "free"]


def test_records_round_trip_and_failing_steps(tmp_path: Path) -> None:
    record = RunRecord(
        "slappart0", "failed", NOW, step=Step("buildout", name="web", exit_status=1), error="e"
    )
    record.write(tmp_path)
    assert (tmp_path / "last-run.json").stat().st_mode & 0o777 == 0o600
    assert RunRecord.read(tmp_path) == record
    (tmp_path / "last-run.json").write_text("{not json")
    assert RunRecord.read(tmp_path) is None
    assert Applied.read(tmp_path) is None
    output = "Installing web.\nWhile:\n  Installing web.\n\nAn internal error occurred\n"
    assert buildout_part(output) == "web"
    assert buildout_part("Error: no such file\n") == ""
    step = promise_step("Promise 'check-web' failed with output: down\nmore")
    assert (step.name, step.message) == ("check-web", "down\nmore")


def test_software_decisions(tmp_path: Path) -> None:
    from slapos.grid.software import SoftwareOptions, SuppliedRelease, decide

    path = tmp_path / "abc"
    wanted = SuppliedRelease("http://sr", "available")
    assert decide(wanted, path, SoftwareOptions()).action == "install"
    path.mkdir()
    assert "did not complete" in decide(wanted, path, SoftwareOptions()).reason
    (path / ".completed").write_text("")
    assert decide(wanted, path, SoftwareOptions()).action == "up-to-date"
    forced = decide(wanted, path, SoftwareOptions(force=True))
    assert (forced.action, forced.reason) == ("install", "--force: rebuilt although installed")
    gone = SuppliedRelease("http://sr", "destroyed")
    assert decide(gone, path, SoftwareOptions()).action == "remove"
    assert decide(gone, tmp_path / "none", SoftwareOptions()).changes_something is False
