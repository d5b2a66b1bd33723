"""Which module defines each command: the one registry of the `slapos` command tree.

`slapos WORD ...` imports and builds only the module that defines WORD, and `slapos node
WORD ...` only the area of `slapos node` that defines it: that is what keeps
`slapos request --help` and the every-minute `slapos node instance` from importing the rest.
A word that is not here (no command, a typo) builds the whole tree, so that help and the
did-you-mean answers see every command. tests/unit/cli/test_registry.py builds the whole tree
and checks that every command is defined by the module this table names, and every entry names
a module that defines it.
"""

from __future__ import annotations

#: Command words -> the module whose register() adds them. First words name a family
#: (a module or package under slapos.cli); "node WORD" names the area of the package
#: slapos.cli.node that defines it, and so for "configure WORD".
COMMANDS = {
    "request": "slapos.cli.client.request",
    "supply": "slapos.cli.client.supply",
    "remove": "slapos.cli.client.supply",
    "service": "slapos.cli.client.service",
    "list": "slapos.cli.client.service",
    "info": "slapos.cli.client.service",
    "computer": "slapos.cli.client.computer",
    "console": "slapos.cli.console",
    "node": "slapos.cli.node",
    "node software": "slapos.cli.node.software",
    "node instance": "slapos.cli.node.instance",
    "node report": "slapos.cli.node.instance",
    "node promise": "slapos.cli.node.instance",
    "node prune": "slapos.cli.node.instance",
    "node bang": "slapos.cli.node.instance",
    "node supervisord": "slapos.cli.node.supervisor",
    "node supervisorctl": "slapos.cli.node.supervisor",
    "node status": "slapos.cli.node.supervisor",
    "node start": "slapos.cli.node.supervisor",
    "node stop": "slapos.cli.node.supervisor",
    "node restart": "slapos.cli.node.supervisor",
    "node tail": "slapos.cli.node.supervisor",
    "node format": "slapos.cli.node.setup",
    "node register": "slapos.cli.node.setup",
    "node boot": "slapos.cli.node.setup",
    "node collect": "slapos.cli.node.collect",
    "node explain": "slapos.cli.node.explain",
    "proxy": "slapos.cli.proxy",
    "configure": "slapos.cli.configure",
    "configure client": "slapos.cli.configure.client",
    "configure local": "slapos.cli.configure.local",
    "cachelookup": "slapos.cli.cache",
    "cache": "slapos.cli.cache",
    "help": "slapos.cli.help",
    "complete": "slapos.cli.completion",
    "explain": "slapos.cli.explain",
}

#: First words whose command reads the whole tree (help texts, completion): they build it all.
WHOLE_TREE = frozenset({"help", "complete"})

#: Every family, in no particular order (`slapos --help` sorts its listing).
FAMILIES = tuple(dict.fromkeys(m for w, m in COMMANDS.items() if " " not in w))

#: The family to build alone for each first word.
FIRST_WORDS = {w: m for w, m in COMMANDS.items() if " " not in w and w not in WHOLE_TREE}


def areas_of(group: str, words: tuple[str, ...]) -> tuple[str, ...]:
    """The areas of the package family `group` (`node`, `configure`) that a command line
    starting with `words` needs: the one defining `group WORD`, else all of them."""
    prefix = group + " "
    areas = {w[len(prefix) :]: m for w, m in COMMANDS.items() if w.startswith(prefix)}
    if len(words) >= 2 and words[0] == group and words[1] in areas:
        return (areas[words[1]],)
    return tuple(dict.fromkeys(areas.values()))
