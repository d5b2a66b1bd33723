"""Our client commands against a real master (upstream's proxy; ours once it lands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.slap import slap
from tests.fakes import FakeClock
from tests.fixtures.slap import format_computer, is_upstream, master  # noqa: F401
from tests.fixtures.upstream import start_upstream_proxy

SR = "https://example.invalid/software/demo/software.cfg"


class Cli:
    def __init__(self, tmp_path: Path, master_url: str, computer_id: str, extra: str = ""):
        self.tmp_path = tmp_path
        self.computer_id = computer_id
        self.master_url = master_url
        self.cfg = tmp_path / "slapos-client.cfg"
        self.cfg.write_text(
            f"[slapos]\nmaster_url = {master_url}\nmaster_rest_url = {master_url}/hateoas\n"
            f"timeout = 10\n{extra}"
        )
        self.slap = slap()
        self.slap.initializeConnection(master_url, timeout=10)

    def __call__(self, *argv: str, clock=None) -> tuple[int, str, str]:
        ctx = Context.for_test(self.tmp_path, clock=clock)
        code = main([*argv, "--cfg", str(self.cfg)], ctx=ctx)
        return code, ctx.stdout.getvalue(), ctx.stderr.getvalue()

    def partition(self, title: str):
        for p in self.slap.registerComputer(self.computer_id).getComputerPartitionList():
            busy = p.getState() != "destroyed" or p._software_release_document is not None
            if busy and p.getInstanceParameterDict().get("instance_title") == title:
                return p
        raise AssertionError(f"no partition for {title}")


@pytest.fixture
def cli(master, tmp_path):  # noqa: F811
    format_computer(master.url, master.computer_id, partitions=4)
    return Cli(tmp_path, master.url, master.computer_id)


def write_release(
    directory: Path, serialisation: str | None, schema: dict[str, Any] | None = None
) -> str:
    """A local software release with a software.cfg.json (path URLs work like http ones)."""
    directory.mkdir(parents=True, exist_ok=True)
    software = directory / "software.cfg"
    software.write_text("[buildout]\nparts =\n")
    entry: dict[str, Any] = {"request": "instance-input-schema.json", "response": "out.json"}
    if serialisation:
        entry["serialisation"] = serialisation
    (directory / "software.cfg.json").write_text(
        json.dumps({"name": "demo", "software-type": {"default": entry}})
    )
    (directory / "instance-input-schema.json").write_text(
        json.dumps(
            schema
            or {
                "type": "object",
                "properties": {"a": {"enum": ["1", "2"]}},
                "additionalProperties": False,
            }
        )
    )
    return str(software)


def test_supply_and_remove(cli):
    code, _, err = cli("supply", SR, cli.computer_id)
    assert code == 0, err
    assert "Requesting software installation of" in err and "Done." in err
    computer = cli.slap.registerComputer(cli.computer_id)
    assert {r.getURI(): r.getState() for r in computer.getSoftwareReleaseList()} == {
        SR: "available"
    }
    code, _out, err = cli("remove", SR, cli.computer_id)
    assert code == 0, err
    assert "Requesting deletion of" in err
    computer = cli.slap.registerComputer(cli.computer_id)
    assert [r.getState() for r in computer.getSoftwareReleaseList()] == ["destroyed"]


def test_request_with_parameters_type_state_and_node(cli):
    code, out, err = cli(
        "request",
        "inst",
        SR,
        "--type",
        "web",
        "--state",
        "stopped",
        "--node",
        f"computer_guid={cli.computer_id}",
        "--parameters",
        "a=1",
        "b=x=y",
    )
    assert code == 0, err
    assert "State is : stopped." in err
    assert out == "{}\n"
    partition = cli.partition("inst")
    assert partition.getState() == "stopped"
    assert partition.getType() == "web"
    params = partition.getInstanceParameterDict()
    assert (params["a"], params["b"]) == ("1", "x=y")


def test_request_without_state_reports_the_state_the_master_keeps(cli):
    """Re-requesting a stopped instance without --state keeps it stopped (protocol.md
    §8.14 item 3): the CLI says so instead of echoing the answer's "started"."""
    code, _, err = cli("request", "inst", SR, "--state", "stopped")
    assert code == 0, err
    code, _, err = cli("request", "inst", SR)
    assert code == 0, err
    assert "State is : stopped." in err and "State is : started." not in err
    assert "the instance stays stopped: add --state started to start it" in err
    assert cli.partition("inst").getState() == "stopped"
    clock = FakeClock()
    code, _, err = cli("request", "inst", SR, "--wait", "--timeout", "600", clock=clock)
    assert code == 0, err  # a stopped instance is ready: no wait for connection parameters
    assert "waiting for" not in err and "stays stopped" in err
    code, _, err = cli("request", "inst", SR, "--state", "started")
    assert code == 0, err
    assert "State is : started." in err and "stays stopped" not in err


def test_request_prints_connection_parameters_published_by_the_node(cli):
    assert cli("request", "inst", SR)[0] == 0
    cli.partition("inst").setConnectionDict({"url": "http://x", "password": "s"})
    code, out, err = cli("request", "inst", SR)
    assert code == 0, err
    assert out == "{'password': 's', 'url': 'http://x'}\n"
    code, out, err = cli("request", "inst", SR, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["connection-parameters"] == {"password": "s", "url": "http://x"}
    assert data["state"] == "started" and data["ready"] is True


def test_json_in_xml_parameters_and_connection(cli, tmp_path):
    release = write_release(tmp_path / "sr", "json-in-xml", {"type": "object"})
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"nested": {"k": [1, 2]}, "n": 3}))
    code, out, err = cli("request", "inst", release, "--parameters-file", str(params))
    assert code == 0, err
    partition = cli.partition("inst")
    sent = partition.getInstanceParameterDict()["_"]
    assert json.loads(sent) == {"nested": {"k": [1, 2]}, "n": 3}
    partition.setConnectionDict({"_": json.dumps({"url": "http://j", "list": [1]})})
    code, out, err = cli("request", "inst", release, "--parameters-file", str(params))
    assert out == "{'list': [1], 'url': 'http://j'}\n"


def test_parameter_files(cli, tmp_path):
    """YAML with an xml-serialised release, XML files, and a release without a schema."""
    release = write_release(tmp_path / "sr", "xml")
    params = tmp_path / "params.yaml"
    params.write_text("a: '3'\nc: extra\n")
    code, _, err = cli("request", "yaml", release, "--parameters-file", str(params))
    assert code == 0, err
    # schema problems warn but never block
    assert "do not validate against schema definition" in err
    assert "$.a: '3' is not one of ['1', '2']" in err
    assert "'c' was unexpected" in err
    params_dict = cli.partition("yaml").getInstanceParameterDict()
    assert (params_dict["a"], params_dict["c"]) == ("3", "extra")
    assert "_" not in params_dict

    # an <instance> document is sent as is
    xml = tmp_path / "params.xml"
    xml.write_text(
        '<instance><parameter id="x">1</parameter><parameter id="y">z</parameter></instance>'
    )
    code, _, err = cli("request", "xml", SR, "--parameters-file", str(xml))
    assert code == 0, err
    got = cli.partition("xml").getInstanceParameterDict()
    assert (got["x"], got["y"]) == ("1", "z")

    # no schema: json-in-xml, said in a warning; --force-serialisation overrides
    plain = tmp_path / "p.json"
    plain.write_text('{"a": 1}')
    code, _, err = cli("request", "noschema", SR, "--parameters-file", str(plain))
    assert code == 0, err
    assert "sending the file as json-in-xml" in err
    assert json.loads(cli.partition("noschema").getInstanceParameterDict()["_"]) == {"a": 1}
    code, _, err = cli(
        "request", "forced", SR, "--parameters-file", str(plain), "--force-serialisation", "xml"
    )
    assert code == 0, err
    assert cli.partition("forced").getInstanceParameterDict()["a"] == "1"


def test_shared_instance(cli):
    assert cli("request", "host", SR)[0] == 0
    code, out, err = cli("request", "front", SR, "--slave", "--parameters", "url=http://x")
    assert code == 0, err
    host = cli.partition("host")
    shared = host.getInstanceParameterDict()["slave_instance_list"]
    assert [s["url"] for s in shared] == ["http://x"]
    host.setConnectionDict({"site": "https://front"}, slave_reference=shared[0]["slave_reference"])
    code, out, err = cli("request", "front", SR, "--slave", "--parameters", "url=http://x")
    assert out == "{'site': 'https://front'}\n"


def test_no_free_partition_is_one_line_exit_1(cli):
    for i in range(4):
        assert cli("request", f"fill{i}", SR)[0] == 0
    code, out, err = cli("request", "one-too-many", SR)
    assert code == 1
    assert "No free computer partition found for: one-too-many" in err
    assert "Traceback" not in err
    assert out == ""


def test_wait_until_connection_parameters(cli):
    assert cli("request", "inst", SR)[0] == 0

    def publish(sleeps: int) -> None:
        """The node publishes on the second poll (time passes only in sleep())."""
        if sleeps == 2:
            cli.partition("inst").setConnectionDict({"url": "http://ready"})

    clock = FakeClock(on_sleep=publish)
    code, out, err = cli("request", "inst", SR, "--wait", "--timeout", "60", clock=clock)
    assert code == 0, err
    # SR was never supplied: said once as a warning, then on each wait line
    assert err.count(f"but its software release is not supplied to {cli.computer_id}") == 3
    assert err.count("waiting for inst: started, allocated to ") == 2
    assert out == "{'url': 'http://ready'}\n"

    code, out, err = cli("request", "inst2", SR, "--wait", "--timeout", "5", clock=FakeClock())
    assert code == 2
    assert "timed out after 5.0s waiting for connection parameters" in err


def test_service_and_computer_commands(cli, master):  # noqa: F811
    assert cli("request", "inst", SR, "--parameters", "a=1")[0] == 0
    cli.partition("inst").setConnectionDict({"_": json.dumps({"u": 1})})
    code, out, err = cli("service", "list")
    assert code == 0, err
    assert json.loads(out) == {"inst": SR}
    assert cli("list")[1] == out  # hidden upstream alias
    code, out, err = cli("service", "info", "inst")
    assert code == 0, err
    info = json.loads(out)
    assert list(info) == [
        "software-url",
        "software-type",
        "shared",
        "requested-state",
        "instance-parameters",
        "connection-parameters",
        "status",
    ]
    assert info["instance-parameters"] == {"a": "1"}
    assert info["connection-parameters"] == {"u": 1}
    # our proxy keeps what nodes report (none yet: "none"); upstream's sends no news
    assert info["status"] == ("unsupported" if is_upstream(master) else "none")
    code, out, err = cli("service", "info", "nope")
    assert (code, out) == (2, "")
    assert "Instance nope does not exist." in err

    code, out, err = cli("computer", "list")
    assert code == 0, err
    assert out == f"List of Computers:\n{cli.computer_id} {cli.computer_id}\n"
    code, out, _ = cli("computer", "list", "--format", "json")
    assert json.loads(out) == [{"reference": cli.computer_id, "title": cli.computer_id}]
    code, out, _ = cli("computer", "info", cli.computer_id)
    assert (code, out) == (
        0,
        f"Computer Reference: {cli.computer_id}\nComputer Title    : {cli.computer_id}\n",
    )
    code, out, _ = cli("computer", "info", "COMP-NOPE")
    assert (code, out) == (2, "Computer COMP-NOPE does not exist.\n")
    # the proxies offer no token API: one clear line, exit 1, no traceback
    code, out, err = cli("computer", "token")
    assert code == 1
    assert len([line for line in err.splitlines() if " ERROR " in line]) == 1
    assert "Traceback" not in err


def test_rest_commands_without_rest_url(master, tmp_path):  # noqa: F811
    cfg = tmp_path / "c.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {master.url}\n")
    ctx = Context.for_test(tmp_path)
    code = main(["service", "list", "--cfg", str(cfg)], ctx=ctx)
    if is_upstream(master):  # no getHateoasUrl there
        assert code == 1
        assert "Hateoas API required for this operation is not available" in ctx.stderr.getvalue()
    else:  # ours answers getHateoasUrl: master_rest_url is optional
        assert code == 0, ctx.stderr.getvalue()


def test_product_and_alias_resolution(upstream, tmp_path):
    gen = start_upstream_proxy(
        upstream,
        tmp_path / "proxy",
        computer_id="COMP-P",
        extra=f"software_product_list =\n  demo {SR}\n",
    )
    proxy = next(gen)
    try:
        format_computer(proxy.url, "COMP-P")
        cli = Cli(tmp_path, proxy.url, "COMP-P", extra=f"[slapos.alias]\nmine = {SR}\n")
        code, _, err = cli("supply", "product.demo", "COMP-P")
        assert code == 0, err
        assert f"Found as {SR}." in err
        code, _, err = cli("request", "inst", "mine")
        assert code == 0, err
        assert cli.partition("inst").getSoftwareRelease().getURI() == SR
        code, _, err = cli("supply", "product.nothing", "COMP-P")
        assert code == 1
        assert "No Software Release corresponding to" in err
    finally:
        gen.close()


def test_remove_of_a_release_never_supplied_says_so(cli):
    never = "http://example.invalid/never-supplied/software.cfg"
    code, _, err = cli("remove", never, cli.computer_id)
    assert code == 0, err
    assert f"{never} is not supplied to {cli.computer_id} (unknown there): nothing to remove" in err
    assert "Done." not in err
    assert cli("supply", SR, cli.computer_id)[0] == 0
    code, _, err = cli("remove", SR, cli.computer_id)
    assert code == 0, err
    assert f"Requesting deletion of {SR}" in err and "Done." in err


def test_supply_to_an_unknown_computer_warns(cli, master):  # noqa: F811
    code, _, err = cli("supply", SR, "COMP-TYPO")
    assert code == 0, err
    if is_upstream(master):  # it answers for any computer: nothing to warn about
        assert "knows no computer" not in err
        return
    assert "the master knows no computer COMP-TYPO: nothing builds or removes" in err
    code, _, err = cli("remove", SR, "COMP-TYPO")
    assert code == 0, err
    assert f"{SR} is not supplied to COMP-TYPO (unknown there): nothing to remove" in err
    code, _, err = cli("supply", SR, cli.computer_id)
    assert code == 0, err
    assert "knows no computer" not in err


def test_request_of_a_release_supplied_nowhere_warns(cli):
    code, _, err = cli("request", "lonely", SR)
    assert code == 0, err
    assert f"but its software release is not supplied to {cli.computer_id}" in err
    assert cli("supply", SR, cli.computer_id)[0] == 0
    code, _, err = cli("request", "lonely", SR)
    assert code == 0, err
    assert "not supplied" not in err


def test_wait_says_what_the_node_reported(cli, master):  # noqa: F811
    """A node that reported an error: the wait lines say it (a master that keeps reports)."""
    assert cli("supply", SR, cli.computer_id)[0] == 0
    assert cli("request", "inst", SR)[0] == 0
    code, _, err = cli("request", "inst", SR, "--wait", "--timeout", "2", clock=FakeClock())
    assert code == 2
    assert "no node has deployed it yet (is slapos node software" in err  # nothing reported
    cli.partition("inst").error("buildout failed: no such part 'x'")
    code, _, err = cli("request", "inst", SR, "--wait", "--timeout", "2", clock=FakeClock())
    assert code == 2
    kept = "whose node reported an error: buildout failed: no such part 'x'" in err
    # upstream's proxy throws node reports away: then the wait line says what it can
    assert kept or "no node has deployed it yet" in err
    assert kept == (not is_upstream(master))


def test_request_hints_name_the_slapos_that_ran(proxy, tmp_path):
    """`.venv/bin/slapos request` run without the venv on PATH: the hint to supply the
    release names that script, which the user can run as printed."""
    import subprocess
    import sys

    format_computer(proxy.url, proxy.computer_id, partitions=2)
    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {proxy.url}\n")
    script = Path(sys.executable).parent / "slapos"
    done = subprocess.run(
        [str(script), "request", "inst", SR, "--cfg", str(cfg)],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"({script} supply {SR} {proxy.computer_id})" in done.stderr
