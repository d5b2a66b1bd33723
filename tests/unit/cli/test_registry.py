"""slapos.cli.registry, the table that lets `slapos WORD` build one family, agrees with the
families: every command is defined by the module the table names, and every entry is used."""

from __future__ import annotations

import pytest

from slapos.cli.main import build_parser, main
from slapos.cli.registry import COMMANDS, FAMILIES, WHOLE_TREE


def whole_tree():
    return build_parser().commands


def test_every_command_is_defined_by_the_family_the_registry_names():
    for info in whole_tree():
        family = info.defined_by[0]
        assert COMMANDS.get(info.words[0]) == family, info.name
        if len(info.defined_by) > 1:  # an area of a package family (slapos.cli.node)
            assert COMMANDS.get(" ".join(info.words[:2])) == info.defined_by[1], info.name


def test_every_registry_entry_names_a_module_that_defines_it():
    defined = set()
    for info in whole_tree():
        defined.add((info.words[0], info.defined_by[0]))
        if len(info.defined_by) > 1:
            defined.add((" ".join(info.words[:2]), info.defined_by[1]))
    assert set(COMMANDS.items()) == defined


@pytest.mark.parametrize("words", sorted(w for w in COMMANDS if w.split()[0] not in WHOLE_TREE))
def test_a_commands_help_builds_only_the_module_that_defines_it(words, capsys):
    """`slapos WORDS --help` builds one family (one area of `node`), and still finds WORDS."""
    argv = words.split()
    parser = build_parser([*argv, "--help"])
    built = {info.defined_by[len(argv) - 1] for info in parser.commands}
    assert built == {COMMANDS[words]}
    assert main([*argv, "--help"]) == 0
    assert f"usage: slapos {words}" in capsys.readouterr().out


def test_help_and_completion_build_the_whole_tree():
    assert {info.defined_by[0] for info in build_parser(["help", "request"]).commands} == set(
        FAMILIES
    )
