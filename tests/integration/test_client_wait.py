"""`request --wait` against a master that answers 408 ("not ready") until it has allocated
the instance, as the real SlapOS Master does (protocol.md §10)."""

from __future__ import annotations

import json
from typing import Any

from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.slap import SoftwareInstance, wire
from tests.fakes import FakeClock

SR = "https://example.invalid/software/demo/software.cfg"


def answer(connection: dict[str, Any]) -> str:
    instance = SoftwareInstance(
        _connection_dict=connection,
        _instance_guid="SOFTINST-1",
        _parameter_dict={"timestamp": "1"},
        _requested_state="started",
        slap_computer_id="COMP-1",
        slap_computer_partition_id="slappart3",
        slap_software_release_url=SR,
        slap_software_type="default",
    )
    return wire.dumps(instance)


def run(tmp_path, url, *argv, clock, reference="inst"):
    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {url}\ntimeout = 5\n")
    ctx = Context.for_test(tmp_path, clock=clock)
    code = main(["request", reference, SR, "--cfg", str(cfg), *argv], ctx=ctx)
    return code, ctx.stdout.getvalue(), ctx.stderr.getvalue()


def test_wait_through_not_ready_then_connection(tmp_path, fake_master):
    fake_master.script = [
        (408, ""),
        (408, ""),
        (200, answer({})),
        (403, ""),  # the state the master keeps (protocol.md §8.14 item 3): may not say
        (403, ""),  # what is supplied to COMP-1: this client may not know
        (403, ""),  # nor what its node reported (the JSON-RPC API)
        (200, answer({"_": json.dumps({"url": "http://ready"})})),
    ]
    clock = FakeClock()
    code, out, err = run(tmp_path, fake_master.url, "--wait", "--timeout", "100", clock=clock)
    assert code == 0, err
    assert out == "{'url': 'http://ready'}\n"
    assert err.count("waiting for inst: not allocated to a partition yet") == 2
    assert (
        err.count(
            "waiting for inst: started, allocated to COMP-1/slappart3, no node has deployed it yet "
            "(is slapos node software, then slapos node instance, running on COMP-1?)"
        )
        == 1
    )
    assert clock.sleeps == [1.0, 1.5, 2.25]
    requests = fake_master.calls("/requestComputerPartition")
    assert len(requests) == 4  # the same request, re-sent: it is idempotent
    assert len({r.body for r in requests}) == 1
    assert len(fake_master.calls("/getFullComputerInformation")) == 1  # asked once


def test_wait_gives_up(tmp_path, fake_master):
    fake_master.routes["/requestComputerPartition"] = (408, "")
    clock = FakeClock()
    code, out, err = run(
        tmp_path, fake_master.url, "--wait", "--timeout", "30", "--format", "json", clock=clock
    )
    assert code == 2
    assert json.loads(out)["ready"] is False
    assert "still not ready after 30.0s" in err
    assert sum(clock.sleeps) <= 30


def test_wait_rides_out_a_master_restart_then_gives_up_when_it_stays_down(tmp_path):
    """Our proxy stopped during `request --wait` (a restart): the command keeps asking, says
    once that the master does not answer, and carries on when it is back; a master that
    stays down ends the wait at --timeout with one line, exit 1."""
    from slapos.slap import slap
    from tests.fixtures.common import free_port
    from tests.fixtures.proxy import start_proxy
    from tests.fixtures.slap import format_computer

    port = free_port()
    running = start_proxy(tmp_path / "proxy", port=port)
    master = next(running)
    format_computer(master.url, master.computer_id, partitions=2)
    assert run(tmp_path, master.url, clock=FakeClock())[0] == 0
    restarted: list[Any] = []

    def world(sleeps: int) -> None:
        if sleeps == 1:
            running.close()  # stopped: connections refused
        elif sleeps == 4:
            restarted.append(start_proxy(tmp_path / "proxy", port=port))
            next(restarted[0])
            connection = slap()
            connection.initializeConnection(master.url, timeout=10)
            computer = connection.registerComputer(master.computer_id)
            for partition in computer.getComputerPartitionList():
                if partition.getState() == "started":
                    partition.setConnectionDict({"url": "http://ready"})

    try:
        code, out, err = run(
            tmp_path, master.url, "--wait", "--timeout", "600", clock=FakeClock(on_sleep=world)
        )
        assert code == 0, err
        assert out == "{'url': 'http://ready'}\n"
        assert err.count("the master does not answer") == 1
        assert "Traceback" not in err

        def stop(sleeps: int) -> None:
            if sleeps == 1:
                restarted[0].close()

        assert run(tmp_path, master.url, clock=FakeClock(), reference="inst2")[0] == 0
        code, out, err = run(
            tmp_path,
            master.url,
            "--wait",
            "--timeout",
            "30",
            clock=FakeClock(on_sleep=stop),
            reference="inst2",
        )
    finally:
        for generator in restarted:
            generator.close()
    assert code == 1
    assert err.count("the master does not answer") == 1
    last = err.strip().splitlines()[-1]
    assert "gave up waiting for inst2 after 30s" in last and "Traceback" not in err
