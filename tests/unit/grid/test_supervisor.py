"""supervisord configuration as files: layout, partition groups, names, extra programs."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import pytest

from slapos.grid import supervisor as sv
from tests.fakes import FakeClock


def read(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(path)
    return parser


def partition(
    root: Path, name: str, run: tuple[str, ...] = (), service: tuple[str, ...] = ()
) -> Path:
    path = root / name
    for folder, names in (("run", run), ("service", service)):
        for n in names:
            (path / "etc" / folder).mkdir(parents=True, exist_ok=True)
            (path / "etc" / folder / n).write_text("#!/bin/sh\n")
    path.mkdir(exist_ok=True)
    return path


def test_layout_and_main_config(tmp_path: Path) -> None:
    paths = sv.write_supervisord_config(tmp_path, "python -m slapos.grid.watchdog")
    assert paths.changed
    assert paths.socket == tmp_path / "sv.sock"
    for d in ("var/log", "var/run", "etc", "etc/supervisord.conf.d"):
        assert (tmp_path / d).stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "var").stat().st_mode & 0o777 == 0o755
    assert paths.config.stat().st_mode & 0o777 == 0o600
    conf = read(paths.config)
    assert conf["include"]["files"] == f"{tmp_path}/etc/supervisord.conf.d/*.conf"
    assert conf["supervisorctl"]["serverurl"] == f"unix://{tmp_path}/sv.sock"
    assert conf["eventlistener:watchdog"]["events"] == "PROCESS_STATE_EXITED, PROCESS_STATE_FATAL"
    assert not sv.write_supervisord_config(tmp_path, "python -m slapos.grid.watchdog").changed
    assert "eventlistener" not in sv.write_supervisord_config(tmp_path).config.read_text()


def test_legacy_socket_and_long_paths(tmp_path: Path) -> None:
    (tmp_path / "supervisord.socket").touch()
    assert sv.write_supervisord_config(tmp_path).socket == tmp_path / "supervisord.socket"
    deep = tmp_path / ("x" * 110)
    deep.mkdir()
    with pytest.raises(sv.SupervisorError, match="longer than"):
        sv.write_supervisord_config(deep)


def test_partition_group_names_as_upstream(tmp_path: Path) -> None:
    sv.write_supervisord_config(tmp_path)
    path = partition(tmp_path, "slappart0", run=("apache",), service=("web",))
    assert sv.write_partition_group(tmp_path, "slappart0", path)
    conf = read(tmp_path / "etc/supervisord.conf.d/slappart0.conf")
    assert conf["group:slappart0"]["programs"] == "slappart0_apache,slappart0_web"
    web = conf["program:slappart0_web"]
    assert web["process_name"] == "web-on-watch"
    assert conf["program:slappart0_apache"]["process_name"] == "apache"
    assert web["command"] == str(path / "etc/service/web")
    assert web["directory"] == str(path)
    assert web["user"] == str(os.stat(path).st_uid)
    assert web["autostart"] == "false" and web["stopasgroup"] == "true"
    assert web["stdout_logfile"] == str(path / ".slappart0_web.log")
    assert not sv.write_partition_group(tmp_path, "slappart0", path)  # unchanged


def test_partition_files_do_not_touch_a_prefix_partition(tmp_path: Path) -> None:
    sv.write_supervisord_config(tmp_path)
    include = tmp_path / "etc/supervisord.conf.d"
    for name in ("part1.conf", "part1-socat.conf", "part1a.conf", "part10.conf"):
        (include / name).write_text("")
    assert [p.name for p in sv.partition_config_files(tmp_path, "part1")] == [
        "part1-socat.conf",
        "part1.conf",
    ]
    assert sv.remove_partition_group(tmp_path, "part1", all_files=False)
    assert (include / "part1-socat.conf").exists()
    sv.remove_partition_group(tmp_path, "part1", all_files=True)
    assert sorted(os.listdir(include)) == ["part10.conf", "part1a.conf"]


def test_no_programs_removes_group(tmp_path: Path) -> None:
    sv.write_supervisord_config(tmp_path)
    path = partition(tmp_path, "slappart0", run=("a",))
    sv.write_partition_group(tmp_path, "slappart0", path)
    (path / "etc/run/a").unlink()
    assert sv.write_partition_group(tmp_path, "slappart0", path)
    assert not (tmp_path / "etc/supervisord.conf.d/slappart0.conf").exists()


def test_add_program_for_configure_local(tmp_path: Path) -> None:
    sv.write_supervisord_config(tmp_path)
    path = sv.add_program(
        tmp_path,
        sv.Program(
            name="slapproxy",
            command="/opt/slapos/bin/slapos proxy start",
            autostart=True,
            autorestart=True,
            user=0,
            log_file=tmp_path / "proxy.log",
        ),
    )
    conf = read(path)["program:slapproxy"]
    assert conf["autostart"] == "true" and conf["user"] == "0"
    assert conf["stdout_logfile"] == str(tmp_path / "proxy.log")
    assert sv.remove_program(tmp_path, "slapproxy") and not path.exists()


def test_nothing_answers(tmp_path: Path) -> None:
    assert sv.running_state(tmp_path) is None
    assert not sv.supervisord_alive(tmp_path)


def test_the_watchdog_reaches_the_master_as_the_node_does(tmp_path: Path) -> None:
    from slapos.config import MasterAccess

    master = MasterAccess("https://m:1", ca_file="/etc/ca.pem", tls_verify=False)
    command = sv.watchdog_command(master, "COMP-1", tmp_path, tmp_path / "certs", python="py")
    assert command.split() == [
        *("py", "-m", "slapos.grid.watchdog", "--master-url", "https://m:1"),
        *("--computer-id", "COMP-1", "--instance-root", str(tmp_path)),
        *("--certificate-repository-path", str(tmp_path / "certs")),
        *("--master-ca-file", "/etc/ca.pem", "--no-master-tls-verify"),
    ]


class StoppingGroup:
    """supervisord's RPC for a reload that removes `slappart0`, whose programs take
    `busy` removal attempts to stop (a timing real supervisord gives only by chance)."""

    def __init__(self, busy: int, then: int | None = None) -> None:
        self.busy, self.then, self.removals = busy, then, 0

    def reloadConfig(self) -> list[list[list[str]]]:
        return [[[], [], ["slappart0"]]]

    def stopProcessGroup(self, group: str) -> bool:
        return True

    def removeProcessGroup(self, group: str) -> bool:
        import xmlrpc.client

        self.removals += 1
        if self.removals <= self.busy:
            raise xmlrpc.client.Fault(91, f"STILL_RUNNING: {group}")
        if self.then is not None:
            raise xmlrpc.client.Fault(self.then, f"BAD_NAME: {group}")
        return True


def supervisor_with(rpc: StoppingGroup, clock: FakeClock) -> sv.Supervisor:
    client = sv.Supervisor(Path("/nonexistent/supervisord.sock"), clock=clock)
    client.rpc = rpc
    return client


def test_a_group_still_stopping_is_removed_once_it_stopped() -> None:
    rpc, clock = StoppingGroup(busy=3), FakeClock()
    assert supervisor_with(rpc, clock).reload() == ([], [], ["slappart0"])
    assert rpc.removals == 4 and clock.sleeps == [1.0, 1.0, 1.0]


def test_a_group_gone_meanwhile_counts_as_removed() -> None:
    rpc, clock = StoppingGroup(busy=1, then=sv.FAULT_BAD_NAME), FakeClock()
    supervisor_with(rpc, clock).reload()
    assert rpc.removals == 2


def test_a_group_that_never_stops_is_an_error_after_ten_attempts() -> None:
    rpc, clock = StoppingGroup(busy=100), FakeClock()
    with pytest.raises(sv.SupervisorError, match="would not remove program group slappart0"):
        supervisor_with(rpc, clock).reload()
    assert rpc.removals == 10 and sum(clock.sleeps) == 9.0
