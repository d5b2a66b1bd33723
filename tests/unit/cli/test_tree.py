"""The command tree: every command exists, parses, documents its options, and fails clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slapos.cli.context import Context
from slapos.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[3]
#: `slapos COMMAND --help` of slapos.core 1.26.1, one file per command (test data).
HELP_DIR = REPO / "tests" / "data" / "help-1.26.1"

#: The 35 commands of slapos.core 1.26.1 (cli.md §4).
UPSTREAM_COMMANDS = [
    "request", "supply", "remove", "service list", "service info", "computer list",
    "computer info", "computer token", "console", "configure client", "node register",
    "node format", "node boot", "node bang", "node software", "node instance", "node report",
    "node promise", "node prune", "node collect", "node supervisord", "node supervisorctl",
    "node status", "node start", "node stop", "node restart", "node tail", "configure local",
    "proxy start", "proxy show", "cachelookup binary-sr", "cachelookup url", "cachelookup pypi",
    "complete", "help",
]  # fmt: skip

#: Options of the seed documentation that 1.26.1 renamed or removed (cli.md §9.2).
SEED_OPTIONS = {
    "request": ["--configuration", "--parameters", "--node", "--type", "--state", "--slave"],
    "node register": ["--ipv6-interface", "--login-auth", "--login", "--password",
                      "--interface-name", "--partition-number", "--master-url-web"],
    "node software": ["--all", "--only", "--promise-timeout"],
    "node instance": ["--all", "--only", "--promise-timeout"],
    "console": ["-i", "-b", "-p", "-u", "-k", "-c"],
    "configure client": ["--master-url", "--master-url-web", "--token"],
}  # fmt: skip

#: Command lines of the seed documentation and of upstream's docs.
SEED_EXAMPLES = [
    "request mykvm kvm --node computer_guid=COMP-1 --configuration nbd-host=nbd.example nbd-port=1024",  # noqa: E501
    "request mykvm kvm --parameters nbd-host=debian.nbd.vifib.net nbd-port=1024 --type default",
    "supply kvm COMP-12345",
    "remove kvm COMP-12345",
    "console",
    "console -p",
    "list",
    "info myinstance",
    "cache lookup kvm",
    "node register mynode --interface-name eth0 --partition-number 10 --token XYZ",
    "node software --all --verbose",
    "node software --only-sr https://lab.example.org/software.cfg --now",
    "node instance --only-cp slappart0,slappart1 --force",
    "node report --maximal_delay 10",
    "node format --now --alter_user False --alter_network False -n",
    "node bang -m 'reboot'",
    "node tail -f slappart0:",
    "configure client --token ask",
    "configure local --partition-number 5",
    "proxy start --cfg x.cfg --log-file /tmp/x.log",
    "proxy show --computers --partitions",
    "cachelookup pypi slapos.core 1.26.1",
    "complete --shell fish",
]  # fmt: skip


def leaf(words: str):
    root = build_parser()
    for info in root.commands:
        if info.name == words:
            return info
    raise AssertionError(f"no command {words!r}")


def options_of(help_text: str) -> set[str]:
    """Option strings listed in the options block of an argparse help text."""
    found: set[str] = set()
    in_options = False
    for line in help_text.splitlines():
        if line.strip() in ("options:", "optional arguments:"):
            in_options = True
            continue
        if in_options and re.match(r"^  -", line):
            head = re.split(r"\s{2,}", line.strip())[0]
            found.update(re.findall(r"(?:^|, )(-{1,2}[\w-]+)", head))
    return found


@pytest.mark.parametrize("words", UPSTREAM_COMMANDS)
def test_every_upstream_command_exists_and_has_help(words, tmp_path):
    ctx = Context.for_test(tmp_path)
    status = main([*words.split(), "--help"], ctx=ctx)
    assert status == 0
    out = ctx.stdout.getvalue()
    assert out.startswith(f"usage: slapos {words}")


@pytest.mark.parametrize("words", UPSTREAM_COMMANDS)
def test_every_upstream_option_is_accepted(words):
    help_file = HELP_DIR / f"{words.replace(' ', '_')}.txt"
    ours = leaf(words).parser.format_help()
    missing = options_of(help_file.read_text()) - options_of(ours)
    assert not missing, f"slapos {words} lacks {sorted(missing)}"


@pytest.mark.parametrize(("words", "options"), SEED_OPTIONS.items())
def test_seed_options_are_kept(words, options):
    ours = options_of(leaf(words).parser.format_help())
    assert set(options) <= ours


@pytest.mark.parametrize("line", SEED_EXAMPLES)
def test_seed_examples_parse(line):
    import shlex

    args = build_parser().parse_args(shlex.split(line))
    assert callable(args.handler)


def test_help_command_prints_that_commands_help(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["help", "node", "software"], ctx=ctx) == 0
    assert ctx.stdout.getvalue().startswith("usage: slapos node software")


def test_help_of_a_group_lists_its_commands(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["help", "node"], ctx=ctx) == 0
    out = ctx.stdout.getvalue()
    assert (
        "node software" in out and "node format" in out and not re.search(r"^  request ", out, re.M)
    )


def test_command_help_flag_prints_that_commands_help(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["request", "-h"], ctx=ctx) == 0
    out = ctx.stdout.getvalue()
    assert out.startswith("usage: slapos request")
    assert "--parameters-file" in out
    assert "node commands:" not in out


def test_bare_slapos_lists_commands_grouped(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main([], ctx=ctx) == 0
    out = ctx.stdout.getvalue()
    blocks = re.findall(r"^(\w+) commands:$", out, re.M)
    assert blocks == ["client", "node", "cachelookup", "other"]
    for words in UPSTREAM_COMMANDS:
        assert re.search(rf"^  {re.escape(words)}  ", out, re.M), words
    # Hidden seed aliases work but are not listed.
    assert not re.search(r"^  list ", out, re.M)


def test_only_global_options_prints_the_listing(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["-v"], ctx=ctx) == 0
    assert "node commands:" in ctx.stdout.getvalue()


def test_help_flag_anywhere_in_a_group(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["node", "--help"], ctx=ctx) == 0
    assert "software" in ctx.stdout.getvalue()


@pytest.mark.parametrize("argv", [["nosuch"], ["node", "nosuch"], ["help", "no", "such"]])
def test_unknown_command_exits_5_with_one_line(argv, tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(argv, ctx=ctx) == 5
    err = ctx.stderr.getvalue()
    assert "does not exist" in err
    assert "Traceback" not in err


def test_bad_option_is_a_usage_error(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["supply", "--no-such-option", "a", "b"], ctx=ctx) == 2
    assert "slapos supply: error: no such option: --no-such-option" in ctx.stderr.getvalue()
    ctx = Context.for_test(tmp_path)
    assert main(["supply", "a", "b", "c"], ctx=ctx) == 2
    err = ctx.stderr.getvalue()
    assert err.startswith("usage: slapos supply ")
    assert "slapos supply: error: unrecognized arguments: c" in err


def test_verbose_and_quiet_exclude_each_other(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["-v", "-q", "help"], ctx=ctx) == 2


def test_version(tmp_path):
    from slapos.version import version

    ctx = Context.for_test(tmp_path)
    assert main(["--version"], ctx=ctx) == 0
    assert ctx.stdout.getvalue().startswith(f"slapos {version} (Python ")


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-file", "LOG", "help"],
        ["help", "--log-file", "LOG"],
        ["help", "--logfile", "LOG"],
        ["help", "--log_file", "LOG"],
    ],
)
def test_global_options_before_or_after_the_command(argv, tmp_path):
    log = tmp_path / "x.log"
    argv = [str(log) if a == "LOG" else a for a in argv]
    args = build_parser().parse_args(argv)
    assert args.log_file == str(log)


def test_innermost_verbosity_wins_and_counts():
    args = build_parser().parse_args(["node", "software", "-v", "-v"])
    assert args.verbose == 2
    args = build_parser().parse_args(["-q", "node", "software"])
    assert args.quiet is True


@pytest.mark.parametrize(
    ("argv", "passed"),
    [
        (["node", "tail", "-f", "slappart0:"], ["-f", "slappart0:"]),
        (["node", "supervisorctl", "--cfg", "x", "status", "-v"], ["status"]),
        (["node", "status", "slappart1:apache", "--cfg=x"], ["slappart1:apache"]),
        (["node", "stop", "all"], ["all"]),
    ],
)
def test_supervisorctl_arguments_pass_through(argv, passed):
    args = build_parser().parse_args(argv)
    assert args.supervisor_args == passed


def test_bare_node_means_node_status():
    args = build_parser().parse_args(["node"])
    assert args.supervisor_action == "status"
    assert args.supervisor_args == []


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["reqest", "a", "b"], "did you mean 'request'? see 'slapos --help'"),
        (["node", "sofware"], "did you mean 'node software'? see 'slapos node --help'"),
        (["service", "lst"], "did you mean 'service list'?"),
    ],
)
def test_a_mistyped_command_gets_a_suggestion(argv, meant, tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(argv, ctx=ctx) == 5
    [line] = ctx.stderr.getvalue().strip().splitlines()
    assert meant in line


def test_a_mistyped_option_gets_the_commands_usage_and_a_suggestion(tmp_path):
    ctx = Context.for_test(tmp_path)
    assert main(["request", "--paramters", "a=b", "x", "y"], ctx=ctx) == 2
    err = ctx.stderr.getvalue()
    assert err.startswith("usage: slapos request ")
    assert err.rstrip().endswith(
        "slapos request: error: no such option: --paramters (did you mean --parameters?)"
    )
    # nothing like it: no suggestion (the shared "--" made --bogus "close" to --verbose)
    ctx = Context.for_test(tmp_path)
    assert main(["request", "--bogus", "x", "y"], ctx=ctx) == 2
    assert ctx.stderr.getvalue().rstrip().endswith("slapos request: error: no such option: --bogus")


def test_options_of_bare_node_are_those_of_node_status(tmp_path):
    missing = tmp_path / "nowhere" / "slapos.cfg"
    for argv in (["node", "--cfg", str(missing)], ["node", "--cfg", str(missing), "status"]):
        ctx = Context.for_test(tmp_path)
        assert main(argv, ctx=ctx) == 1
        assert f"configuration file does not exist: {missing}" in ctx.stderr.getvalue()


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["node", "format", "--now"], "'slapos configure local' or 'slapos node register'"),
        (["node", "boot"], "'slapos configure local' or 'slapos node register'"),
        (["cachelookup", "url", "x"], "'slapos configure local' or 'slapos node register'"),
        (["proxy", "start"], "e.g. DIR/etc/slapos-proxy.cfg as 'slapos configure local'"),
        (["proxy", "revoke", "x"], "e.g. DIR/etc/slapos-proxy.cfg as 'slapos configure local'"),
    ],
)
def test_a_missing_configuration_says_what_to_pass(argv, hint, tmp_path):
    missing = tmp_path / "nowhere" / "slapos.cfg"
    ctx = Context.for_test(tmp_path, euid=0)
    assert main([*argv, "--cfg", str(missing)], ctx=ctx) == 1
    [line] = ctx.stderr.getvalue().strip().splitlines()
    assert f"configuration file does not exist: {missing} (" in line and hint in line
