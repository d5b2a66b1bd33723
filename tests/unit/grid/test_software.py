"""The software engine with a fake master and a fake buildout (node.md §4)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from slapos.config import NetworkCacheConfig, NodeConfig
from slapos.grid.progress import NoProgress
from slapos.grid.software import (
    COMPLETED,
    Software,
    SoftwareEngine,
    SoftwareOptions,
    SuppliedRelease,
    local_path,
    matches_only,
    remove_tree,
)
from slapos.grid.utils import software_hash
from tests.fakes import Call, FakeClock, FakeRunner
from tests.fakes.buildout import fake_buildout
from tests.fakes.master import FakeSoftwareMaster

A = "http://example.invalid/a/software.cfg"
B = "http://example.invalid/b/software.cfg"


def _config(tmp_path: Path, **kw: object) -> NodeConfig:
    root = tmp_path / "soft"
    root.mkdir(exist_ok=True)
    values: dict[str, object] = {
        "path": tmp_path / "slapos.cfg",
        "computer_id": "COMP-1",
        "master_url": "http://127.0.0.1:1",
        "software_root": root,
        "instance_root": tmp_path / "inst",
        "software_min_free_space": "0",
    }
    values.update(kw)
    return NodeConfig(**values)  # type: ignore[arg-type]


def _engine(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    master: FakeSoftwareMaster,
    runner: FakeRunner | None = None,
    euid: int = 1000,
    **kw: object,
):
    clock = FakeClock()
    return SoftwareEngine(
        _config(tmp_path, **kw),
        master,
        runner or FakeRunner(default=fake_buildout),
        clock,
        {"PATH": "/bin"},
        progress=NoProgress(clock),
        python="/py",
        euid=euid,
    )


def test_software_hash_is_md5_of_the_url() -> None:
    assert software_hash(A) == hashlib.md5(A.encode()).hexdigest()


def test_available_release_is_built_and_reported(tmp_path: Path) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "available")])
    runner = FakeRunner(default=fake_buildout)
    engine = _engine(tmp_path, master, runner)
    result = engine.process(SoftwareOptions())
    assert result.exit_code == 0
    assert result.installed == [A]
    assert master.reports == [("building", A), ("available", A)]
    sr = engine.config.software_root / software_hash(A)
    assert (sr / COMPLETED).is_file()
    assert (sr / "extends-cache").is_dir()
    assert (sr / "buildout.cfg").read_text() == (
        f"[buildout]\nextends = {A}\nshared-part-list = \nbuild-time-part-list = \n\n"
    )
    run = runner.calls[1].argv
    assert run[run.index("-U") :] == (
        "-U",
        f"buildout:extends-cache={sr}/extends-cache",
        f"buildout:directory={sr}",
        f"buildout:download-cache={engine.config.software_root}/.slapgrid/download-cache",
        "-N",
        "-c",
        f"{sr}/buildout.cfg",
    )
    log = engine.config.software_root / ".slapgrid" / "log" / f"{software_hash(A)}.log"
    assert "Installing hello." in log.read_text()


def test_completed_release_is_left_alone_unless_forced(tmp_path: Path) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "available")])
    runner = FakeRunner(default=fake_buildout)
    engine = _engine(tmp_path, master, runner)
    engine.process(SoftwareOptions())
    master.reports.clear()
    runner.calls.clear()
    result = engine.process(SoftwareOptions())
    assert result.up_to_date == [A] and not runner.calls and not master.reports
    result = engine.process(SoftwareOptions(force=True))
    assert result.installed == [A]
    assert "-N" not in runner.calls[-1].argv  # --force drops -N
    assert len(runner.calls) == 1  # bin/buildout exists: no bootstrap


def test_only_sr_by_url_or_md5_forces_those_and_skips_others(tmp_path: Path) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "available"), SuppliedRelease(B, "available")])
    engine = _engine(tmp_path, master)
    result = engine.process(SoftwareOptions(only=(software_hash(B),)))
    assert result.installed == [B]
    result = engine.process(SoftwareOptions(only=(B,)))
    assert result.installed == [B]  # rebuilt: --only-sr forces, as its help says
    assert matches_only(A, [A]) and matches_only(A, [software_hash(A)])
    assert not matches_only(A, [B])


def test_only_sr_matching_nothing_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "available")])
    engine = _engine(tmp_path, master)
    result = engine.process(SoftwareOptions(only=("http://example.invalid/typo.cfg", A)))
    assert result.installed == [A]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [m for m in warned if m.startswith("--only-sr")] == [
        "--only-sr http://example.invalid/typo.cfg: no release supplied to this node matches it"
    ]
    caplog.clear()
    decisions, _ = engine.plan(SoftwareOptions(only=("typo",)))
    assert decisions == []
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [m for m in warned if m.startswith("--only-sr")] == [
        "--only-sr typo: no release supplied to this node matches it"
    ]


def test_failure_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    def script(call: Call) -> tuple[int, str]:
        if software_hash(A) in str(call.cwd) and "bootstrap" not in call.argv[-1]:
            return 1, "Installing broken.\nWhile:\n  Installing broken.\nError: boom\n"
        return fake_buildout(call)

    master = FakeSoftwareMaster([SuppliedRelease(A, "available"), SuppliedRelease(B, "available")])
    engine = _engine(tmp_path, master, FakeRunner(default=script))
    result = engine.process(SoftwareOptions())
    assert result.exit_code == 1
    assert [f.url for f in result.failed] == [A]
    assert result.failed[0].reason == "boom"
    assert result.installed == [B]
    assert master.reports == [("building", A), ("error", A), ("building", B), ("available", B)]
    assert master.errors[A].startswith("Failed to run buildout profile in directory")
    assert "Error: boom" in master.errors[A]
    assert not (engine.config.software_root / software_hash(A) / COMPLETED).exists()


def test_not_enough_space_is_a_one_line_failure(tmp_path: Path) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "available")])
    runner = FakeRunner(default=fake_buildout)
    engine = _engine(tmp_path, master, runner, software_min_free_space="100000T")
    result = engine.process(SoftwareOptions())
    assert result.exit_code == 1
    reason = result.failed[0].reason
    assert reason.startswith("not enough space in ") and "software_min_free_space" in reason
    assert "\n" not in reason
    assert not runner.calls
    assert master.reports == [("building", A), ("error", A)]


def test_destroyed_release_is_removed_and_reported(tmp_path: Path) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "available")])
    engine = _engine(tmp_path, master)
    engine.process(SoftwareOptions())
    sr = engine.config.software_root / software_hash(A)
    (sr / "parts" / "ro").mkdir()
    (sr / "parts" / "ro" / "f").write_text("x")
    (sr / "parts" / "ro").chmod(0o500)
    master.releases = [SuppliedRelease(A, "destroyed")]
    master.reports.clear()
    result = engine.process(SoftwareOptions())
    assert result.destroyed == [A] and not sr.exists()
    assert master.reports == [("destroyed", A)]
    engine.process(SoftwareOptions())  # already gone: reported again (upstream does)
    assert master.reports == [("destroyed", A), ("destroyed", A)]


def test_garbage_collect_removes_only_unsupplied_release_directories(tmp_path: Path) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "available"), SuppliedRelease(B, "available")])
    engine = _engine(tmp_path, master)
    engine.process(SoftwareOptions())
    root = engine.config.software_root
    stray = root / ("f" * 32)
    stray.mkdir()
    (stray / "buildout.cfg").write_text("")
    no_profile = root / ("e" * 32)
    no_profile.mkdir()
    other = root / "not-a-hash"
    other.mkdir()
    (other / "buildout.cfg").write_text("")
    engine.process(SoftwareOptions(garbage_collect=True, only=(A,)))
    assert not stray.exists()
    assert no_profile.exists() and other.exists()
    # --only-sr A does not make B garbage (upstream would remove it)
    assert (root / software_hash(B)).exists()
    master.releases = [SuppliedRelease(A, "available")]
    engine.process(SoftwareOptions(garbage_collect=True))
    assert not (root / software_hash(B)).exists()


def test_networkcache_options_are_passed_to_buildout(tmp_path: Path) -> None:
    cache = NetworkCacheConfig(
        upload_cache_url="https://up/cache",
        upload_dir_url="https://up/dir",
        signature_private_key_file="/k.pem",
        shacache_cert_file="/c.pem",
    )
    config = _config(tmp_path, networkcache=cache, shared_part_list=("/a", "/b"))
    software = Software(A, config, FakeRunner(default=fake_buildout), {}, force=True, euid=1000)
    args = software.buildout_arguments(Path("/ec"), Path("/b.cfg"))
    assert args == [
        "buildout:extends-cache=/ec",
        f"buildout:directory={software.path}",
        f"buildout:download-cache={config.software_root}/.slapgrid/download-cache",
        "buildout:networkcache-section=networkcache",
        "networkcache:signature-private-key-file=/k.pem",
        "networkcache:upload-cache-url=https://up/cache",
        "networkcache:upload-dir-url=https://up/dir",
        "networkcache:shacache-cert-file=/c.pem",
        "-c",
        "/b.cfg",
    ]
    assert "shared-part-list = /a\n\t/b\n" in software.profile_text()


def test_forced_binary_cache_never_builds(tmp_path: Path) -> None:
    cache = NetworkCacheConfig(
        download_from_binary_cache_force_url_list=("http://example.invalid/",)
    )
    master = FakeSoftwareMaster([SuppliedRelease(A, "available")])
    runner = FakeRunner(default=fake_buildout)
    engine = _engine(tmp_path, master, runner, networkcache=cache)
    result = engine.process(SoftwareOptions())
    assert result.exit_code == 1
    assert "binary cache is forced" in result.failed[0].reason
    assert not runner.calls


def test_missing_software_root_stops_the_run(tmp_path: Path) -> None:
    from slapos.errors import SlapOSError

    engine = _engine(tmp_path, FakeSoftwareMaster(), software_root=tmp_path / "nope")
    with pytest.raises(SlapOSError, match="software_root"):
        engine.process(SoftwareOptions())


def test_unknown_state_is_ignored(tmp_path: Path) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "something")])
    result = _engine(tmp_path, master).process(SoftwareOptions())
    assert result.exit_code == 0 and not master.reports


def test_local_path() -> None:
    assert local_path("/srv/sr/software.cfg") == Path("/srv/sr/software.cfg")
    assert local_path("file:///srv/a%20b/software.cfg") == Path("/srv/a b/software.cfg")
    assert local_path("http://x/software.cfg") is None


def test_remove_tree_handles_unreadable_directories(tmp_path: Path) -> None:
    d = tmp_path / "t" / "a" / "b"
    d.mkdir(parents=True)
    (d / "f").write_text("x")
    d.chmod(0)
    (tmp_path / "t" / "a").chmod(0o500)
    remove_tree(tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_release_from_a_git_checkout_notes_its_revision_once(tmp_path: Path) -> None:
    checkout = tmp_path / "repo"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "software.cfg").write_text("[buildout]\n")
    url = str(checkout / "software.cfg")

    def script(call: Call) -> tuple[int, str]:
        if call.argv[0] == "git":
            assert call.cwd == checkout
            return 0, "heads/main-0-gabc1234\n"
        return fake_buildout(call)

    master = FakeSoftwareMaster([SuppliedRelease(url, "available")])
    engine = _engine(tmp_path, master, FakeRunner(default=script))
    engine.process(SoftwareOptions())
    engine.process(SoftwareOptions(force=True))
    profile = (engine.config.software_root / software_hash(url) / "buildout.cfg").read_text()
    assert profile.count("git revision: heads/main-0-gabc1234") == 1
    assert profile.splitlines()[-1].startswith("# 20")


@pytest.mark.root
def test_root_owned_software_root_is_refused_in_one_line(tmp_path: Path) -> None:
    master = FakeSoftwareMaster([SuppliedRelease(A, "available")])
    runner = FakeRunner(default=fake_buildout)
    result = _engine(tmp_path, master, runner, euid=0).process(SoftwareOptions())
    assert result.exit_code == 1
    assert "belongs to root" in result.failed[0].reason
    assert not runner.calls


def test_url_that_would_inject_configuration_is_refused(tmp_path: Path) -> None:
    evil = "http://x/software.cfg\n[buildout]\nparts = evil"
    master = FakeSoftwareMaster(
        [SuppliedRelease(evil, "available"), SuppliedRelease(A, "available")]
    )
    runner = FakeRunner(default=fake_buildout)
    result = _engine(tmp_path, master, runner).process(SoftwareOptions())
    assert [f.reason for f in result.failed] == [f"invalid software release URL {evil!r}"]
    assert result.installed == [A]
    assert not (tmp_path / "soft" / software_hash(evil)).exists()


def test_profile_keeps_the_raw_multi_line_option_as_upstream(tmp_path: Path) -> None:
    from slapos.config import IniFile, node_config_from_ini

    ini = IniFile.parse(
        "[slapos]\ncomputer_id = C\nmaster_url = http://m\nsoftware_root = /s\n"
        "instance_root = /i\nshared_part_list =\n  /opt/shared\n  /srv/shared\n"
    )
    software = Software(
        A, node_config_from_ini(ini), FakeRunner(default=fake_buildout), {}, euid=1000
    )
    assert software.profile_text() == (
        f"[buildout]\nextends = {A}\n"
        "shared-part-list = \n\t/opt/shared\n\t/srv/shared\n"
        "build-time-part-list = \n\n"
    )


def test_summary_line() -> None:
    from slapos.grid.software import Failure, SoftwareResult

    assert SoftwareResult().summary() == "software releases: none to process"
    result = SoftwareResult(installed=[A], up_to_date=[B, B], failed=[Failure(A, "x")])
    assert result.summary() == "software releases: 1 built, 2 up to date, 1 failed"
