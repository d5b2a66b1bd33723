"""Configuration files: which file is read, and one clear line for each problem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.config import IniFile, load_client_config, load_node_config
from slapos.errors import ConfigError, ExitCode

NODE_CFG = """\
[slapos]
computer_id = COMP-1
master_url = http://127.0.0.1:1
software_root = /opt/slapgrid
instance_root = /srv/slapgrid
maximum_periodicity = 300

[networkcache]
download-binary-cache-url = http://127.0.0.1:2/cache
download-from-binary-cache-url-blacklist =
  http://a/
  http://b/
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- which file --------------------------------------------------------------------


def test_node_config_cfg_option_wins(tmp_path):
    ctx = Context.for_test(tmp_path, environ={"SLAPOS_CONFIGURATION": "/env.cfg"})
    assert ctx.node_config_path("/opt.cfg") == Path("/opt.cfg")


def test_node_config_environment_variable(tmp_path):
    ctx = Context.for_test(tmp_path, environ={"SLAPOS_CONFIGURATION": "/env.cfg"})
    assert ctx.node_config_path(None) == Path("/env.cfg")


def test_node_config_default(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert ctx.node_config_path(None) == Path("/etc/opt/slapos/slapos.cfg")


def test_tilde_is_expanded_against_home(tmp_path):
    ctx = Context.for_test(tmp_path, environ={"HOME": "/home/someone"})
    assert ctx.node_config_path("~/x.cfg") == Path("/home/someone/x.cfg")


def test_client_config_cfg_then_env_then_default(tmp_path):
    home = tmp_path / "h"
    ctx = Context.for_test(tmp_path, environ={"HOME": str(home)})
    assert ctx.client_config_path("/a.cfg") == Path("/a.cfg")
    assert ctx.client_config_path(None) == home / ".slapos/slapos-client.cfg"
    ctx = Context.for_test(
        tmp_path, environ={"HOME": str(home), "SLAPOS_CLIENT_CONFIGURATION": "/e.cfg"}
    )
    assert ctx.client_config_path(None) == Path("/e.cfg")


def test_client_config_falls_back_to_seed_slapos_cfg(tmp_path):
    home = tmp_path / "h"
    write(home / ".slapos/slapos.cfg", "[slapos]\nmaster_url = http://x\n")
    ctx = Context.for_test(tmp_path, environ={"HOME": str(home)})
    assert ctx.client_config_path(None) == home / ".slapos/slapos.cfg"
    write(home / ".slapos/slapos-client.cfg", "[slapos]\nmaster_url = http://y\n")
    assert ctx.client_config_path(None) == home / ".slapos/slapos-client.cfg"


# ---- parsing ------------------------------------------------------------------------


def test_node_config_values_and_overrides(tmp_path):
    path = write(tmp_path / "slapos.cfg", NODE_CFG)
    cfg = load_node_config(path, {"computer_id": "COMP-2", "maximal_delay": None})
    assert cfg.computer_id == "COMP-2"
    assert cfg.master_url == "http://127.0.0.1:1"
    assert cfg.maximum_periodicity == 300
    assert cfg.software_root == Path("/opt/slapgrid")
    assert cfg.networkcache.download_binary_cache_url == "http://127.0.0.1:2/cache"
    assert cfg.networkcache.download_from_binary_cache_url_blacklist == ("http://a/", "http://b/")


def test_hyphen_and_underscore_keys_are_the_same(tmp_path):
    ini = IniFile.parse("[slapos]\nmaster-url = http://x\n")
    assert ini.get("slapos", "master_url") == "http://x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not an ini file\n", "not a valid configuration file"),
        ("[other]\nx = 1\n", "missing section [slapos]"),
        ("[slapos]\nmaster_url = http://x\n", "[slapos] computer_id is missing"),
        (
            NODE_CFG.replace("computer_id = COMP-1", "computer_id ="),
            "[slapos] computer_id is empty",
        ),
        (
            NODE_CFG.replace("= 300", "= often"),
            "[slapos] maximum_periodicity: expected a whole number",
        ),
        (
            NODE_CFG.replace("[networkcache]", "root_check = maybe\n[networkcache]"),
            "expected true or false",
        ),
    ],
)
def test_node_config_errors_name_file_section_and_key(tmp_path, text, message):
    path = write(tmp_path / "slapos.cfg", text)
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[slapos]\nmaster_url = http://a\ncomputer_id = C\nmaster_url = http://b\n",
            "[slapos] master_url is set twice, on lines 2 and 4 (keep one)",
        ),
        (  # one key to us, two to configparser: the later would win silently
            "[slapos]\nmaster-url = http://a\n# note\n\nMaster_URL: http://b\n",
            "[slapos] Master_URL is set twice, on lines 2 and 5 (keep one)",
        ),
        (  # a section named twice stays one section: its keys still may not repeat
            "[slapos]\nmaster_url = http://a\n[x]\ny = 1\n[slapos]\nmaster_url = http://b\n",
            "[slapos] master_url is set twice, on lines 2 and 6 (keep one)",
        ),
    ],
)
def test_a_key_set_twice_names_both_lines(tmp_path, text, message):
    path = write(tmp_path / "slapos.cfg", text)
    with pytest.raises(ConfigError) as info:
        IniFile.read(path)
    assert str(info.value) == f"{path}: {message}"


def test_same_key_in_other_sections_or_continued_values_is_fine():
    ini = IniFile.parse("[a]\nx = 1\nlist =\n  x = 2\n  x = 3\n[b]\nx = 4\n[a]\ny = 5\n")
    assert (ini.get("a", "x"), ini.get("b", "x"), ini.get("a", "y")) == ("1", "4", "5")
    assert ini.get_list("a", "list") == ("x = 2", "x = 3")


def test_duplicate_key_is_one_line_exit_1_for_every_command_reading_it(tmp_path):
    """The node's, the client's and the proxy's files are all read by IniFile."""
    twice = NODE_CFG + "[slapos]\nmaster_url = http://127.0.0.1:2\n"
    cfg = write(tmp_path / "slapos.cfg", twice)
    for argv in (
        ["node", "software", "--cfg", str(cfg)],
        ["request", "x", "http://sr", "--cfg", str(cfg)],
        ["proxy", "start", "--cfg", str(cfg)],
    ):
        ctx = Context.for_test(tmp_path)
        status = main(argv, ctx=ctx)
        err = ctx.stderr.getvalue().strip()
        assert status == ExitCode.FAILURE, (argv, err)
        [line] = err.splitlines()
        assert line.endswith(
            f" ERROR {cfg}: [slapos] master_url is set twice, on lines 3 and 14 (keep one)"
        ), argv


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"configuration file does not exist: .*nope\.cfg"):
        load_node_config(tmp_path / "nope.cfg")


def test_unreadable_file(tmp_path):
    path = write(tmp_path / "slapos.cfg", NODE_CFG)
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(ConfigError, match="permission denied"):
            load_node_config(path)
        return
    # root reads everything: read it from a child that became nobody
    tmp_path.chmod(0o755)
    tmp_path.parent.chmod(0o755)
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                load_node_config(path)
                message = "read"
            except ConfigError as e:
                message = str(e)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        message = f.read()
    assert "permission denied" in message, message


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_node_config(tmp_path)


def test_client_config(tmp_path):
    path = write(
        tmp_path / "c.cfg",
        "[slapos]\nmaster_url = http://m\n[slapos.alias]\nkvm = http://sr/kvm.cfg\n",
    )
    cfg = load_client_config(path)
    assert cfg.master_url == "http://m"
    assert cfg.resolve_alias("kvm") == "http://sr/kvm.cfg"
    assert cfg.resolve_alias("http://other") == "http://other"


def test_master_tls_verify_and_answer_limit(tmp_path):
    node = load_node_config(write(tmp_path / "slapos.cfg", NODE_CFG))
    assert (node.master_tls_verify, node.master_max_answer_mb) == (True, 128)
    text = NODE_CFG.replace(
        "[networkcache]", "master-tls-verify = false\nmaster_max_answer_mb = 512\n[networkcache]"
    )
    node = load_node_config(write(tmp_path / "slapos.cfg", text))
    assert (node.master_tls_verify, node.master_max_answer_mb) == (False, 512)
    client = load_client_config(write(tmp_path / "c.cfg", "[slapos]\nmaster_url = http://m\n"))
    assert (client.master_tls_verify, client.master_max_answer_mb) == (True, 128)
    text = "[slapos]\nmaster_url = http://m\nmaster_tls_verify = no\nmaster_max_answer_mb = 9\n"
    client = load_client_config(write(tmp_path / "c.cfg", text))
    assert (client.master_tls_verify, client.master_max_answer_mb) == (False, 9)
    for bad, message in (("0", "expected a positive number"), ("x", "expected a whole number")):
        path = write(
            tmp_path / "c.cfg", f"[slapos]\nmaster_url = http://m\nmaster_max_answer_mb = {bad}\n"
        )
        with pytest.raises(ConfigError, match=r"\[slapos\] master_max_answer_mb: " + message):
            load_client_config(path)


def test_unused_slapconsole_keys_are_said_to_be_ignored(tmp_path, caplog):
    """Upstream turns every [slapconsole] key into an option default; only the pair mattered."""
    text = (
        "[slapos]\nmaster_url = http://m\n[slapconsole]\nkey_file = ~/k\ncert_file = ~/c\n"
        "alias =\n  kvm http://sr/kvm.cfg\n"
    )
    config = load_client_config(write(tmp_path / "c.cfg", text))
    assert (
        config.key_file == os.path.expanduser("~/k")
        and config.resolve_alias("kvm") == "http://sr/kvm.cfg"
    )
    assert caplog.records == []
    text += "ipython = true\nmaster-url = http://other\n"
    config = load_client_config(write(tmp_path / "c.cfg", text))
    assert config.master_url == "http://m"
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"{tmp_path / 'c.cfg'}: [slapconsole] ipython, master_url: accepted and ignored"
    )


def test_manager_list_is_said_to_be_ignored(tmp_path, caplog):
    load_node_config(
        write(tmp_path / "slapos.cfg", NODE_CFG.replace("[net", "manager_list =\n[net"))
    )
    assert caplog.records == []
    text = NODE_CFG.replace("[net", "manager_list = prerm, portredir\n[net")
    load_node_config(write(tmp_path / "slapos.cfg", text))
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert "[slapos] manager_list = prerm portredir is accepted and ignored" in record.getMessage()


def test_client_config_command_line_master_url_wins(tmp_path):
    path = write(tmp_path / "c.cfg", "[slapos]\nmaster_url = http://m\n")
    assert load_client_config(path, master_url="http://n").master_url == "http://n"


def test_https_client_config_without_a_certificate(tmp_path):
    """Allowed (unlike upstream): the master may not ask for a client certificate."""
    path = write(tmp_path / "c.cfg", "[slapos]\nmaster_url = https://m\n")
    config = load_client_config(path)
    assert (config.key_file, config.cert_file) == (None, None)


def test_client_config_without_master_url(tmp_path):
    path = write(tmp_path / "c.cfg", "[slapos]\n")
    with pytest.raises(ConfigError, match=r"\[slapos\] master_url is missing"):
        load_client_config(path)


# ---- what the user sees ----------------------------------------------------------------


def failing_handler(message: str):
    def handler(args, ctx):
        load_node_config(Path(message))

    return handler


def test_config_error_is_one_line_exit_1(tmp_path):
    ctx = Context.for_test(tmp_path)
    status = main(["node", "bang", "--cfg", str(tmp_path / "missing.cfg")], ctx=ctx)
    # Whatever `node bang` does, a missing configuration is reported first, in one line.
    err = ctx.stderr.getvalue()
    assert status == ExitCode.FAILURE
    assert "configuration file does not exist" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ValueError("boom"), ExitCode.BUG, "CRITICAL internal error: ValueError: boom"),
        (ConfigError("x.cfg: [slapos] computer_id is missing"), 1, "ERROR x.cfg: [slapos]"),
    ],
)
@pytest.mark.parametrize("debug", [False, True])
def test_errors_show_a_traceback_only_with_debug(tmp_path, error, code, line, debug):
    import argparse

    from slapos.cli.main import _setup_logging, run_handler

    def fails(args, ctx):
        raise error

    ctx = Context.for_test(tmp_path)
    ns = argparse.Namespace(debug=debug, verbose=0, quiet=False, log_file=None)
    _setup_logging(ns, ctx)
    assert run_handler(fails, ns, ctx) == code
    err = ctx.stderr.getvalue()
    assert line in err
    assert ("Traceback" in err) is debug


def test_log_file_gets_debug_lines(tmp_path):
    import argparse
    import logging

    from slapos.cli.main import _setup_logging

    log_file = tmp_path / "slapos.log"
    ctx = Context.for_test(tmp_path)
    ns = argparse.Namespace(debug=False, verbose=0, quiet=True, log_file=str(log_file))
    _setup_logging(ns, ctx)
    logging.getLogger("slapos.test").debug("a debug line")
    logging.getLogger("slapos.test").warning("a warning")
    text = log_file.read_text()
    assert "DEBUG    a debug line" in text and "WARNING  a warning" in text
    err = ctx.stderr.getvalue()
    assert "a warning" in err and "a debug line" not in err
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler):
            logging.getLogger().removeHandler(handler)
            handler.close()


def test_a_definition_file_setting_a_key_twice_names_both_lines():
    from slapos.format.model import read_definition

    text = "[computer]\naddress = 10.0.0.1/24\n[partition_0]\nuser = a\nuser = b\n"
    with pytest.raises(ConfigError) as info:
        read_definition(text, "def.cfg", 1)
    assert (
        str(info.value) == "def.cfg: [partition_0] user is set twice, on lines 4 and 5 (keep one)"
    )


def test_a_bad_master_url_names_where_it_came_from(tmp_path):
    cfg = write(tmp_path / "slapos.cfg", NODE_CFG)
    with pytest.raises(ConfigError) as info:
        load_node_config(cfg, {"master_url": "http://127.0.0.1:99999"})
    assert str(info.value) == (
        "--master-url is not a URL: 'http://127.0.0.1:99999' (Port out of range 0-65535)"
    )
    write(cfg, NODE_CFG.replace("127.0.0.1:1", "127.0.0.1:99999"))
    with pytest.raises(ConfigError, match=rf"^{cfg}: \[slapos\] master_url is not a URL: "):
        load_node_config(cfg, {"master_url": None})  # (None: not on the command line)
