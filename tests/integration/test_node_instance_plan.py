"""`slapos node instance --dry-run` on a real node (our proxy, tests/data/sr-instance,
real buildout and supervisord): each scenario's plan, then the real run, which must do
what the plan said.

Every dry run here is made by a user who cannot write the node (as root: a user of its
own with only CAP_DAC_READ_SEARCH, so it reads everything and writes nothing; otherwise
the node is made read-only for the time of the dry run), against a master that refuses
every write; the node's files are compared before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.master import RecordingMaster
from tests.fixtures.common import wait_for
from tests.fixtures.grid_instance import InstanceNode

DOCS = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture
def master(proxy):  # type: ignore[no-untyped-def]
    return proxy


@pytest.fixture
def reader() -> Iterator[str | None]:
    """As root, a user that may read everything (CAP_DAC_READ_SEARCH) and write nothing."""
    if os.geteuid() != 0:
        yield None
        return
    name = f"slro{os.getpid() % 100000}"
    subprocess.run(["useradd", "-M", "-U", "-s", "/bin/sh", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture
def node(recorder, instance_node_factory, built_sr_instance) -> InstanceNode:
    n: InstanceNode = instance_node_factory(recorder, software=built_sr_instance, promise_timeout=5)
    return n


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (mode, size, mtime) of everything under `root` (sockets included).

    The logs that running processes write on their own (supervisord's, its programs') are
    left out: a service may log while the dry run runs. Their presence is still compared.
    """
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            live = name.endswith(".log") and (
                dirpath.endswith("/var/log") or re.fullmatch(r"\.slappart\d+_.*\.log", name)
            )
            seen[path] = (st.st_mode, 0, 0) if live else (st.st_mode, st.st_size, st.st_mtime_ns)
    return seen


@contextlib.contextmanager
def read_only(root: Path) -> Iterator[None]:
    """Not root: take the write bits off the tree, so that any write fails (EACCES)."""
    modes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(path)
            if not os.path.islink(path):
                modes[path] = st.st_mode
                os.chmod(path, st.st_mode & ~0o222)
    try:
        yield
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)


def dry_run(
    node: InstanceNode,
    recorder: RecordingMaster,
    reader: str | None,
    *args: str,
    as_reader: bool = True,
    command: str = "instance",
) -> tuple[int, dict[str, Any], str]:
    """`node COMMAND --dry-run --format json` then the text form: (code, plan, text)."""
    before = snapshot(node.base)
    calls = len(recorder.calls)
    recorder.refuse_writes = True
    try:
        results = []
        for form in ("json", "text"):
            argv = [
                str(node.python),
                "-m",
                "slapos",
                "node",
                command,
                "--dry-run",
                "--format",
                form,
                *args,
                "--cfg",
                str(node.config),
            ]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
            if as_reader and reader is not None:
                argv = [
                    "setpriv",
                    f"--reuid={reader}",
                    f"--regid={reader}",
                    "--clear-groups",
                    "--inh-caps=+dac_read_search",
                    "--ambient-caps=+dac_read_search",
                    "--",
                    *argv,
                ]
            guard = (
                read_only(node.base) if as_reader and reader is None else contextlib.nullcontext()
            )
            with guard:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=120, env=env, check=False
                )
            assert done.returncode in (0, 4), done.stderr
            assert "Traceback" not in done.stderr, done.stderr
            results.append(done)
    finally:
        recorder.refuse_writes = False
    assert [c for c in recorder.calls[calls:] if c[0] == "POST"] == []
    assert snapshot(node.base) == before, "the dry run changed the node"
    assert results[0].returncode == results[1].returncode
    return results[0].returncode, json.loads(results[0].stdout), results[1].stdout


def by_id(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["partition_id"]: p for p in plan["partitions"]}


def last_run(node: InstanceNode, partition_id: str) -> dict[str, Any]:
    path = node.partition(partition_id) / ".slapgrid" / "last-run.json"
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def assert_run_did(node: InstanceNode, plan: dict[str, Any], recorder: RecordingMaster, calls: int):
    """The run that followed `plan` did what it said, partition by partition."""
    for p in plan["partitions"]:
        pid = p["partition_id"]
        if p["action"] == "free":
            continue
        record = last_run(node, pid)
        assert record["action"] == p["action"], (pid, record, p)
        assert record["reasons"] == [r["code"] for r in p["reasons"]], (pid, record, p)
        posted = {
            path
            for method, path, form in recorder.calls[calls:]
            if method == "POST" and form.get("computer_partition_id") == pid
        }
        if p["action"] == "skip":
            assert record["status"] == "skipped"
            assert not posted & {"softwareInstanceError", "stoppedComputerPartition"}
            continue
        if record["status"] == "failed":  # buildout failed: services untouched, error told
            assert record["services"] == "keep" and record["master"] == ["error"]
            assert "softwareInstanceError" in posted
            continue
        assert record["services"] == p["services"], (pid, record, p)
        if record["status"] == "processed":
            told = [c for c in p["master"] if c in ("started", "stopped", "error")]
            assert record["master"] == told, (pid, record, p)
            wire = {"started": "startedComputerPartition", "stopped": "stoppedComputerPartition"}
            assert {wire[c] for c in told} <= posted


def run(node: InstanceNode, recorder: RecordingMaster, plan: dict[str, Any], expected: int) -> str:
    calls = len(recorder.calls)
    done = node.slapos("node", "instance")
    assert done.returncode == expected, done.stderr
    assert_run_did(node, plan, recorder, calls)
    return done.stderr


def explain(node: InstanceNode, partition_id: str) -> str:
    done = node.slapos("node", "explain", partition_id)
    assert done.returncode == 0, done.stderr
    return done.stdout


def save_example(node: InstanceNode, name: str, text: str) -> None:
    """The docs show real output: tests write it to docs/examples/ (checked in), with the
    test's temporary paths and port replaced by stable ones so that the file only changes
    when the output does."""

    for real, stable in (
        (node.instance_root, "/srv/slapgrid"),
        (node.software_root, "/opt/slapgrid"),
        (node.config, "/etc/opt/slapos/slapos.cfg"),
        (node.python, "/opt/slapos/bin/python"),
        (DOCS.parents[1], "/opt/slapos/lib/python3/site-packages"),
    ):
        text = text.replace(str(real), stable)
    text = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:8080", text)
    import hashlib

    stable_hashes: dict[str, str] = {}

    def stable_hash(match: re.Match[str]) -> str:
        fake = stable_hashes.setdefault(
            match.group(1),
            hashlib.md5(f"release {len(stable_hashes)}".encode()).hexdigest(),
        )
        return "/opt/slapgrid/" + fake

    text = re.sub(r"/opt/slapgrid/([0-9a-f]{32})", stable_hash, text)
    text = re.sub(r"\(\d+s ago\)", "(1s ago)", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(,\d+)?", "2026-12-06 01:15:12", text)
    DOCS.mkdir(exist_ok=True)
    (DOCS / name).write_text(text)


def test_plans_match_runs(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster, reader: str | None
) -> None:
    # a new instance: processed, never seen before
    web = node.request(sr_url, "web", password="hunter2", promise="none").getId()
    code, plan, text = dry_run(node, recorder, reader)
    assert code == 4
    p = by_id(plan)[web]
    assert p["action"] == "process" and p["reasons"][0]["code"] == "never-processed"
    assert p["services"] == "start" and p["master"] == ["connection-parameters", "started"]
    assert f"{web} [default] started: process" in text
    assert "hunter2" not in text + json.dumps(plan)
    run(node, recorder, plan, 0)

    # nothing to do: exit 0, every partition skipped or free
    code, plan, text = dry_run(node, recorder, reader)
    assert code == 0, text
    assert by_id(plan)[web]["action"] == "skip"
    assert text.rstrip().endswith("a real run would change nothing (exit 0)")
    run(node, recorder, plan, 0)

    # changed parameters, one of them secret; the promise now fails
    node.request(sr_url, "web", password="s3cret", promise="fail")
    code, plan, text = dry_run(node, recorder, reader)
    assert code == 4
    [reason] = by_id(plan)[web]["reasons"]
    assert reason["code"] == "parameters"
    changes = {c["key"]: (c["old"], c["new"]) for c in reason["changes"]}
    assert changes == {"password": ("***", "***"), "promise": ("none", "fail")}
    assert "promise: 'none' -> 'fail'" in text
    assert by_id(plan)[web]["connection_keys"] == ["url"]
    assert "connection parameters re-published by the release's buildout (now: url)" in text
    assert "s3cret" not in text and "hunter2" not in text
    save_example(node, "dry-run-parameters.txt", text)
    stderr = run(node, recorder, plan, 2)
    assert "web check failed on purpose" in stderr
    record = last_run(node, web)
    assert record["status"] == "promise-failed"
    assert record["step"]["kind"] == "promise" and record["step"]["name"] == "check-web"
    told = explain(node, web)
    assert f"{web} [default] started: PROMISE FAILED, last run " in told
    assert "  step      promise 'check-web': web check failed on purpose\n" in told
    assert f"{web}/.slapgrid/promise/log/check-web.log (last " in told
    assert (
        f"  rerun     slapos node instance --cfg {node.config} --only-cp {web} --force -v" in told
    )

    # the failed promise is remembered: the next run processes again, and says why
    code, plan, text = dry_run(node, recorder, reader)
    assert code == 4
    [reason] = by_id(plan)[web]["reasons"]
    assert reason["code"] == "promise-failed"
    assert "a promise failed last run: Promise 'check-web' failed" in text
    run(node, recorder, plan, 2)

    # a failing buildout part, beside a partition that is fine
    node.request(sr_url, "web", promise="")
    bad = node.request(sr_url, "bad", fail_buildout="1", promise="none").getId()
    code, plan, text = dry_run(node, recorder, reader)
    assert code == 4
    assert by_id(plan)[bad]["reasons"][0]["code"] == "never-processed"
    run(node, recorder, plan, 1)
    step = last_run(node, bad)["step"]
    assert step["kind"] == "buildout" and step["name"] == "web"
    assert "instance failed on purpose" in step["message"]
    told = explain(node, bad)
    assert "  step      buildout part 'web': instance failed on purpose (fail-buildout)" in told
    assert f"  command   {node.partition(bad)}/sbin/buildout" in told or "bin/buildout" in told
    assert "slapos.grid.buildout Error: instance failed on purpose (fail-buildout)" in told
    save_example(node, "explain-buildout.txt", told)
    everything = node.slapos("node", "explain")
    assert everything.returncode == 0, everything.stderr
    assert f"{web} [default] started: processed, last run " in everything.stdout
    assert f"{bad} [default] started: FAILED, last run " in everything.stdout
    code, plan, text = dry_run(node, recorder, reader)
    assert by_id(plan)[bad]["reasons"][0]["code"] == "last-run-failed"
    assert "last run failed: buildout failed" in text

    # state changes: stopped, then destroyed
    node.request(sr_url, "bad", state="destroyed")
    node.request(sr_url, "web", state="stopped", promise="")
    code, plan, text = dry_run(node, recorder, reader)
    assert code == 4
    p = by_id(plan)[web]
    assert [r["code"] for r in p["reasons"]] == ["state"]
    assert "requested state changed: started -> stopped" in text
    assert p["services"] == "stop" and "stopped" in p["master"]
    d = by_id(plan)[bad]
    assert d["requested_state"] == "destroyed" and d["services"] == "stop"
    save_example(node, "dry-run-states.txt", text)
    run(node, recorder, plan, 0)
    code, plan, _ = dry_run(node, recorder, reader)
    assert code == 0

    # node report --dry-run: the destroyed partition would be emptied; then it is
    code, report, text = dry_run(node, recorder, reader, command="report")
    assert code == 4
    assert list(report["destroy"]) == [bad] and report["kept"] == {}
    assert f"destroy: {bad}: services removed, partition emptied" in text
    save_example(node, "dry-run-report.txt", text)
    assert node.slapos("node", "report").returncode == 0
    assert os.listdir(node.partition(bad)) == []
    code, report, text = dry_run(node, recorder, reader, command="report")
    assert code == 0 and report["destroy"] == {}, text
    code, plan, _ = dry_run(node, recorder, reader)
    assert code == 0 and by_id(plan)[bad]["action"] == "free"


def test_software_dry_run(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster, reader: str | None
) -> None:
    code, plan, text = dry_run(node, recorder, reader, command="software")
    assert code == 0, text
    [release] = plan["software_releases"]
    assert (release["url"], release["action"]) == (sr_url, "up-to-date")
    assert f"up-to-date: {sr_url}" in text
    code, plan, _ = dry_run(node, recorder, reader, "--only-sr", sr_url, command="software")
    assert code == 4
    assert plan["software_releases"][0]["reason"] == "--only-sr: rebuilt although installed"

    supply = node.slap().registerSupply()
    supply.supply(sr_url + "-new", node.computer_id)
    supply.supply(sr_url + "-gone", node.computer_id, "destroyed")
    code, plan, text = dry_run(node, recorder, reader, command="software")
    assert code == 4
    actions = {r["url"]: (r["action"], r["reason"]) for r in plan["software_releases"]}
    assert actions[sr_url + "-new"] == ("install", "supplied, not installed yet")
    assert actions[sr_url + "-gone"] == ("report-destroyed", "already removed")
    assert text.rstrip().endswith("a real run would change something (exit 4)")
    save_example(node, "dry-run-software.txt", text.replace(sr_url, "https://lab.example/sr.cfg"))


def test_stopped_service_and_force(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster, reader: str | None
) -> None:
    from slapos.grid import supervisor

    web = node.request(sr_url, "web").getId()
    assert node.slapos("node", "instance").returncode == 0
    with supervisor.connect(node.instance_root) as sv:
        sv.stop_group(web)
    # the operator's own dry run (not the read-only user: supervisord's socket is the
    # node's) sees the stopped program; the run leaves it stopped, its promise fails
    code, plan, text = dry_run(node, recorder, reader, as_reader=False)
    assert code == 0
    p = by_id(plan)[web]
    assert p["action"] == "skip" and p["check_promises"]
    assert "web-on-watch STOPPED" in p["services_detail"]
    assert "this run does not restart web-on-watch" in text
    save_example(node, "dry-run-stopped-service.txt", text)
    run(node, recorder, plan, 0)
    step = last_run(node, web)["step"]
    assert step["kind"] == "supervisord" and step["name"] == f"{web}:web-on-watch"
    assert step["state"] == "STOPPED"
    told = explain(node, web)
    assert f"{web} [default] started: up to date but failing, last run " in told
    assert f"  step      program {web}:web-on-watch is STOPPED" in told
    assert f"  log       {node.partition(web)}/.{web}_web.log" in told
    explained = json.loads(node.slapos("node", "explain", "--format", "json").stdout)
    [mine] = [e for e in explained if e["partition_id"] == web]
    assert mine["failing"] is True and mine["record"]["step"]["kind"] == "supervisord"

    # the next plan still skips it, and says what the last run saw
    code, plan, text = dry_run(node, recorder, reader)
    assert code == 0
    assert [r["code"] for r in by_id(plan)[web]["reasons"]] == ["up-to-date", "still-failing"]
    assert f"last run: supervisord {web}:web-on-watch: web-on-watch is STOPPED" in text

    # --force: processed again, and that restarts it
    code, plan, text = dry_run(node, recorder, reader, "--force")
    assert code == 4
    assert [r["code"] for r in by_id(plan)[web]["reasons"]] == ["force"]
    run_forced = node.slapos("node", "instance", "--force")
    assert run_forced.returncode == 0, run_forced.stderr
    assert last_run(node, web)["reasons"] == ["force"]
    wait_for(
        lambda: (
            supervisor.process_states(node.instance_root, [f"{web}:web-on-watch"]).get(
                f"{web}:web-on-watch"
            )
            == "RUNNING"
        ),
        10,
        "the service to run again",
    )


def test_port_in_use_explained(
    node: InstanceNode, sr_url: str, recorder: RecordingMaster, reader: str | None
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web = node.request(sr_url, "web", port=str(port)).getId()
        code, plan, _ = dry_run(node, recorder, reader)
        assert code == 4
        run(node, recorder, plan, 2)
        step = last_run(node, web)["step"]
        assert step["kind"] == "supervisord" and step["name"] == f"{web}:web-on-watch"
        told = explain(node, web)
    assert f"  step      program {web}:web-on-watch is " in told
    assert "  hint      another process holds the port" in told
    assert f"{web}/.{web}_web.log (last " in told
    assert "Address already in use" in told
    save_example(node, "explain-port-in-use.txt", told)


@pytest.mark.root
def test_a_user_who_cannot_read_the_partitions_is_told(
    node: InstanceNode, sr_url: str, reader: str | None
) -> None:
    """No guess from what cannot be read: the partition is "unknown", the run "would change"."""
    assert reader is not None  # root: a user of its own, here without CAP_DAC_READ_SEARCH
    web = node.request(sr_url, "web", promise="none").getId()
    assert node.slapos("node", "instance").returncode == 0
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={reader}",
            f"--regid={reader}",
            "--clear-groups",
            "--",
            str(node.python),
            "-m",
            "slapos",
            "node",
            "instance",
            "--dry-run",
            "--cfg",
            str(node.config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert f"{web} [default] started: unknown" in done.stdout
    assert "this user cannot read the partition: run the dry run as root" in done.stdout
    # supervisord runs; this user cannot see it (its pid file is private): not "not running"
    assert "supervisord started" not in done.stdout
    assert "whether supervisord runs is unknown here (permission denied)" in done.stdout


def test_master_down_the_plan_says_offline(node: InstanceNode, recorder: RecordingMaster) -> None:
    recorder.down = True
    done = node.slapos("node", "instance", "--dry-run")
    assert done.returncode == 4, done.stderr
    assert "offline: master unreachable (" in done.stdout
    assert "a real run goes offline and starts every service supervisord knows" in done.stdout
    assert not (node.instance_root / "etc" / "supervisord.conf").exists()
