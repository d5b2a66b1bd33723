"""The demo's command line: DIR before or after the options, one clear line otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from slapos.demo.cli import main, parse_args
from slapos.errors import ExitCode


@pytest.mark.parametrize(
    "argv",
    [
        ["mydir", "--destroy"],
        ["--destroy", "mydir"],  # refused before: DIR after the option
        ["--user-base-name", "u", "--destroy", "mydir"],
        ["--destroy", "mydir", "--software-user", "s"],
    ],
)
def test_dir_before_or_after_the_options(argv: list[str]) -> None:
    args = parse_args(["--relative-to", "/caller", *argv])
    assert args.destroy and not args.stop
    assert args.root == Path("/caller/mydir")


def test_stop_after_dir_and_defaults(tmp_path: Path) -> None:
    args = parse_args(["--stop", str(tmp_path / "d")])
    assert args.stop and args.root == tmp_path / "d"  # an absolute DIR is taken as it is
    args = parse_args(["--relative-to", "/caller"])
    assert (args.stop, args.destroy, args.root) == (False, False, Path("/caller/demo"))
    args = parse_args(["--relative-to", "/caller", "--default-dir", "/srv/slapos-demo"])
    assert args.root == Path("/srv/slapos-demo")  # dev.sh's, for a closed clone
    assert parse_args(["x"]).root == Path.cwd() / "x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["a", "b"], "error: one DIR only, got 2: a b"),
        (["a", "--destroy", "b"], "error: one DIR only, got 2: a b"),
        (["--stop", "--destroy"], "error: argument --destroy: not allowed with argument --stop"),
        (["--destory", "a"], "error: unrecognized arguments: --destory"),
        (
            ["--port", "80x"],
            "error: argument --port: expected a port number (1 to 65535), got '80x'",
        ),
        (["--port", "0"], "error: argument --port: expected a port number (1 to 65535), got '0'"),
    ],
)
def test_anything_else_is_one_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--invoked-as", "/src/dev.sh demo"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: /src/dev.sh demo ")  # named as the user started it
    assert err.rstrip().splitlines()[-1] == f"/src/dev.sh demo: {message}"


def test_help_describes_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "usage: python -m slapos.demo [-h] [--stop | --destroy]" in out
    assert "The README demo" in out and "--relative-to" not in out


def test_destroy_of_nothing_in_either_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["--destroy", "gone"], ["gone", "--destroy"]):
        assert main([*argv, "--relative-to", str(tmp_path)]) == ExitCode.OK
        assert capsys.readouterr().out == f"nothing to remove: {tmp_path / 'gone'} does not exist\n"


def test_port_is_for_a_new_dir_only(tmp_path: Path) -> None:
    """--port chooses a new DIR's port (tests and a user's demo then do not meet on 8080);
    a DIR set up before keeps its own, and another --port says so in one line."""
    from slapos.demo.deploy import _choose_port
    from slapos.demo.layout import DemoLayout
    from slapos.errors import ConfigError

    assert parse_args(["--port", "18080", "d"]).port == 18080
    assert parse_args(["d"]).port is None
    layout = DemoLayout(tmp_path / "demo")
    assert _choose_port(layout, 18080) == 18080
    proxy_config = layout.settings().proxy_config
    proxy_config.parent.mkdir(parents=True)
    proxy_config.write_text("[slapproxy]\nhost = 127.0.0.1\nport = 18081\n")
    assert _choose_port(layout, None) == _choose_port(layout, 18081) == 18081
    with pytest.raises(ConfigError) as info:
        _choose_port(layout, 18080)
    assert str(info.value) == (
        f"{layout.root} was set up with port 18081 ({proxy_config}); run it without --port, "
        "or with --destroy first for port 18080"
    )
