"""Pure helpers of the client commands."""

from __future__ import annotations

import pytest

from slapos.cli.client import ParameterError, decode_connection, parse_key_values
from slapos.cli.client.request import load_parameters_file
from slapos.errors import UsageError


def test_parse_key_values():
    assert parse_key_values(["a=1", "b=x=y", "c="], "--parameters") == {
        "a": "1",
        "b": "x=y",
        "c": "",
    }
    assert parse_key_values(None, "--node") == {}
    with pytest.raises(ParameterError, match="not of the form key=value"):
        parse_key_values(["a"], "--parameters")
    with pytest.raises(ParameterError, match="same key 'a'"):
        parse_key_values(["a=1", "a=2"], "--parameters")


def test_decode_connection():
    assert decode_connection({"_": '{"a": [1]}'}, None) == {"a": [1]}
    assert decode_connection({"_": '{"a": [1]}'}, "json-in-xml") == {"a": [1]}
    assert decode_connection({"_": '{"a": [1]}'}, "xml") == {"_": '{"a": [1]}'}
    master_list = [{"connection_key": "url", "connection_value": "http://x"}]
    assert decode_connection(master_list, "xml") == {"url": "http://x"}
    xml = '<instance><parameter id="k">v</parameter></instance>'
    assert decode_connection(xml, "xml") == {"k": "v"}
    assert decode_connection(None, None) == {}
    assert decode_connection({"_": "not json"}, None) == {"_": "not json"}


def test_load_parameters_file(tmp_path):
    (tmp_path / "p.json").write_text('{"a": 1}')
    (tmp_path / "p.yml").write_text("a: [1, 2]\n")
    (tmp_path / "p.xml").write_text('<instance><parameter id="a">1</parameter></instance>')
    assert load_parameters_file(str(tmp_path / "p.json")) == ({"a": 1}, False)
    assert load_parameters_file(str(tmp_path / "p.yml")) == ({"a": [1, 2]}, False)
    assert load_parameters_file(str(tmp_path / "p.xml")) == ({"a": "1"}, True)
    with pytest.raises(UsageError, match="cannot read"):
        load_parameters_file(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("value", ["-3", "0", "nan", "abc"])
def test_request_timeout_must_be_seconds_above_zero(tmp_path, value):
    from slapos.cli.context import Context
    from slapos.cli.main import main

    ctx = Context.for_test(tmp_path)
    assert main(["request", "x", "https://sr/software.cfg", "--wait", "--timeout", value], ctx) == 2
    err = ctx.stderr.getvalue()
    assert f"argument --timeout: expected a number of seconds above 0, got '{value}'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:99999/", "master_url is not a URL: 'http://127.0.0.1:99999/' (Port"),
        ("http://[::1/", "master_url is not a URL: 'http://[::1/' (Invalid IPv6 URL)"),
    ],
)
def test_a_malformed_master_url_is_one_line_exit_1(tmp_path, url, said):
    from slapos.cli.context import Context
    from slapos.cli.main import main

    cfg = tmp_path / "client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {url}\n")
    ctx = Context.for_test(tmp_path)
    assert main(["service", "list", "--cfg", str(cfg)], ctx) == 1
    [line] = ctx.stderr.getvalue().strip().splitlines()
    assert said in line and "internal error" not in line
    # a node with it: a configuration error, not a master "unreachable" (offline, exit 3)
    node = tmp_path / "slapos.cfg"
    node.write_text(
        f"[slapos]\ncomputer_id = C\nmaster_url = {url}\nsoftware_root = {tmp_path}/soft\n"
        f"instance_root = {tmp_path}/srv\n"
    )
    ctx = Context.for_test(tmp_path)
    assert main(["node", "instance", "--cfg", str(node)], ctx) == 1
    [line] = ctx.stderr.getvalue().strip().splitlines()
    assert said in line


def test_tls_files_that_cannot_be_loaded_are_named(tmp_path):
    from slapos.cli.context import Context
    from slapos.cli.main import main

    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for key, value, said in [
        ("master_ca_file", tmp_path / "nowhere.pem", f"(CA {tmp_path / 'nowhere.pem'}): no such"),
        ("master_ca_file", junk, f"(CA {junk}): [X509"),
    ]:
        cfg = tmp_path / "client.cfg"
        cfg.write_text(f"[slapos]\nmaster_url = https://127.0.0.1:1/\n{key} = {value}\n")
        ctx = Context.for_test(tmp_path)
        assert main(["service", "list", "--cfg", str(cfg)], ctx) == 1
        [line] = ctx.stderr.getvalue().strip().splitlines()
        assert f"TLS error on GET getHateoasUrl: cannot load the TLS files {said}" in line, line
