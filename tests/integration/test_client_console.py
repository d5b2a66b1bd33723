"""`slapos console`: scripts and shells with the slap globals, against a real master."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from slapos.cli.context import Context
from slapos.cli.main import main
from tests.fixtures.common import free_port
from tests.fixtures.slap import format_computer, master  # noqa: F401

SR = "https://example.invalid/software/demo/software.cfg"


@pytest.fixture
def cfg(master, tmp_path):  # noqa: F811
    format_computer(master.url, master.computer_id)
    path = tmp_path / "client.cfg"
    path.write_text(
        f"[slapos]\nmaster_url = {master.url}\nmaster_rest_url = {master.url}/hateoas\n"
        f"[slapos.alias]\ndemo = {SR}\n"
    )
    return path


def test_script_uses_console_globals(master, cfg, tmp_path):  # noqa: F811
    script = tmp_path / "script.py"
    out = tmp_path / "out.txt"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            supply(demo, {master.computer_id!r})
            partition = request(demo, "from-console", partition_parameter_kw={{"a": "1"}})
            info = getInformation("from-console")
            with open({str(out)!r}, "w") as f:
                print(sys.argv[1:], __file__ == sys.argv[0], partition.getState(),
                      info._parameter_dict, type(slap).__name__, file=f)
            """
        )
    )
    ctx = Context.for_test(tmp_path)
    code = main(["console", "--cfg", str(cfg), str(script), "x", "y"], ctx=ctx)
    assert code == 0, ctx.stderr.getvalue()
    assert out.read_text() == "['x', 'y'] True started {'a': '1'} slap\n"


@pytest.fixture
def offline_cfg(tmp_path):
    """The shells need no master to start: the connection is lazy."""
    path = tmp_path / "offline.cfg"
    path.write_text(f"[slapos]\nmaster_url = http://127.0.0.1:{free_port()}\n")
    return path


def shell(cfg, tmp_path, *options, stdin):
    return subprocess.run(  # noqa: PLW1510 - the status is asserted
        [sys.executable, "-m", "slapos", "console", *options, "--cfg", str(cfg)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


NAMES = ["slap", "request", "supply", "product", "getInformation"]
GLOBALS = f"print('globals', all(n in globals() for n in {NAMES!r}), type(slap).__name__)\n"
EXPECTED = "globals True slap"


def test_plain_shell(offline_cfg, tmp_path):
    result = shell(offline_cfg, tmp_path, "-p", stdin=GLOBALS)
    assert result.returncode == 0, result.stderr
    assert EXPECTED in result.stdout
    assert "now exiting InteractiveConsole..." in result.stderr
    assert (tmp_path / ".slapconsolehistory").exists()


@pytest.mark.skipif(importlib.util.find_spec("IPython") is None, reason="IPython not installed")
def test_ipython_shell(offline_cfg, tmp_path):
    result = shell(offline_cfg, tmp_path, "-i", stdin=GLOBALS)
    assert result.returncode == 0, result.stderr
    assert EXPECTED in result.stdout
    assert 'You can play with the global\n"slap" object' in result.stdout


def test_missing_bpython_falls_back(offline_cfg, tmp_path):
    if importlib.util.find_spec("bpython") is not None:
        pytest.skip("bpython is installed")
    result = shell(offline_cfg, tmp_path, "-b", stdin="print(1 + 1)\n")
    assert result.returncode == 0
    assert "bpython not available - using plain Python shell" in result.stderr
    assert "2" in result.stdout


def test_piped_input_runs_as_a_script(offline_cfg, tmp_path, capsys):
    """`slapos console < x.py`: a script, as python runs one (a block needs no empty line
    after it, no prompt on stdout); -p/-i/-b still open that shell on piped input."""
    block = "for i in range(2):\n    print(i)\nprint('done', type(slap).__name__)\n"
    result = shell(offline_cfg, tmp_path, stdin=block)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0\n1\ndone slap\n"
    assert "now exiting InteractiveConsole" not in result.stderr
    assert shell(offline_cfg, tmp_path, stdin="raise SystemExit(4)\n").returncode == 4
    failed = shell(offline_cfg, tmp_path, stdin="x = 1\n1 / 0\n")
    assert failed.returncode == 1
    assert 'File "<stdin>", line 2, in <module>' in failed.stderr
    # "-" names standard input explicitly, and takes arguments
    ctx = Context.for_test(tmp_path, stdin="import sys\nprint(sys.argv)\n")
    assert main(["console", "--cfg", str(offline_cfg), "-", "a"], ctx=ctx) == 0
    assert capsys.readouterr().out == "['-', 'a']\n"  # the script prints to sys.stdout


def test_script_and_shell_option_conflict(offline_cfg, tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["console", "-p", "--cfg", str(offline_cfg), "x.py"], ctx=ctx) == 2


def test_script_errors_and_exit_codes(offline_cfg, tmp_path):
    cfg = offline_cfg
    failing = tmp_path / "fail.py"
    failing.write_text("raise ValueError('boom')\n")
    ctx = Context.for_test(tmp_path)
    assert main(["console", "--cfg", str(cfg), str(failing)], ctx=ctx) == 1
    assert "ValueError: boom" in ctx.stderr.getvalue()
    # the user's code: its traceback is shown, as Python shows it, from the script's frames
    nested = tmp_path / "nested.py"
    nested.write_text("def inner():\n    return 1 / 0\n\ninner()\n")
    ctx = Context.for_test(tmp_path)
    assert main(["console", "--cfg", str(cfg), str(nested)], ctx=ctx) == 1
    err = ctx.stderr.getvalue()
    assert err.startswith("Traceback (most recent call last):\n"), err
    assert f'File "{nested}", line 4, in <module>' in err
    assert f'File "{nested}", line 2, in inner' in err
    assert err.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "console.py" not in err
    exiting = tmp_path / "exit.py"
    exiting.write_text("raise SystemExit(7)\n")
    assert main(["console", "--cfg", str(cfg), str(exiting)], ctx=Context.for_test(tmp_path)) == 7
    ctx = Context.for_test(tmp_path)
    assert main(["console", "--cfg", str(cfg), str(tmp_path / "missing.py")], ctx=ctx) == 2
