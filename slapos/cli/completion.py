"""`slapos complete`: bash or fish completion, generated from the one argparse tree
(slapos.cli.registry builds all of it for this command)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from slapos.cli._common import SlapOSArgumentParser, SubParsers, add_command

if TYPE_CHECKING:
    from slapos.cli._common import CommandInfo
    from slapos.cli.context import Context


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = add_command(sub, root, ("complete",), group="other", help="Generate shell completions.")
    p.add_argument(
        "--name",
        default="slapos",
        metavar="<command_name>",
        help="Command name to support with command completion",
    )
    p.add_argument(
        "--shell",
        default="bash",
        choices=("bash", "fish", "none"),
        metavar="<shell>",
        help="Shell being used. Use none for data only (default: bash)",
    )
    p.set_defaults(handler=run_complete, root_parser=root)


def _options(info: CommandInfo) -> list[str]:
    """Option strings of a command, -h/--help first, global options left out."""
    result = ["-h", "--help"]
    for action in info.parser._actions:
        if action.default == argparse.SUPPRESS and action.dest != "help":
            continue  # global options re-added on every leaf
        for opt in action.option_strings:
            if opt not in result:
                result.append(opt)
    return result


def _var(words: tuple[str, ...]) -> str:
    return "_".join(("cmds", *words)).replace("-", "_")


def completion_data(root: SlapOSArgumentParser) -> list[tuple[str, str]]:
    """(variable, words) pairs: first words, second words per group, options per command."""
    infos = list(root.commands)
    data: list[tuple[str, str]] = [("cmds", " ".join(sorted({c.words[0] for c in infos})))]
    groups = sorted({c.words[0] for c in infos if len(c.words) > 1})
    for group in groups:
        seconds = sorted({c.words[1] for c in infos if len(c.words) > 1 and c.words[0] == group})
        data.append((_var((group,)), " ".join(seconds)))
    for info in sorted(infos, key=lambda c: c.words):
        data.append((_var(info.words), " ".join(_options(info))))
    return data


BASH_TEMPLATE = """\
_{name}()
{{
  local cur cmds cmd_var i w
  COMPREPLY=()
  cur="${{COMP_WORDS[COMP_CWORD]}}"
{data}
  cmd_var="cmds"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    [[ "$w" == -* ]] && continue
    w="${{w//-/_}}"
    if [[ -n "${{!cmd_var}}" && -n "$(eval echo \\${{${{cmd_var}}_${{w}}+x}})" ]]; then
      cmd_var="${{cmd_var}}_${{w}}"
    else
      break
    fi
  done
  local words="${{!cmd_var}}"
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
  else
    local subcommands=""
    for w in $words; do [[ "$w" != -* ]] && subcommands+="$w "; done
    if [[ -n "$subcommands" ]]; then
      COMPREPLY=( $(compgen -W "$subcommands" -- "$cur") )
    else
      COMPREPLY=( $(compgen -f -- "$cur") )
    fi
  fi
  return 0
}}
complete -o filenames -F _{name} {name}
"""


def bash_completion(root: SlapOSArgumentParser, name: str) -> str:
    data = "\n".join(f"  {var}='{words}'" for var, words in completion_data(root))
    return BASH_TEMPLATE.format(name=name.replace("-", "_"), data=data).replace(
        f"complete -o filenames -F _{name.replace('-', '_')} {name.replace('-', '_')}",
        f"complete -o filenames -F _{name.replace('-', '_')} {name}",
    )


def _fish_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def fish_completion(root: SlapOSArgumentParser, name: str) -> str:
    """fish completions: sorted, one block per command, correct sub-command conditions."""
    seen = "__fish_seen_subcommand_from"
    lines = [f"# completions for {name} generated with `{name} complete --shell=fish`"]
    infos = sorted(root.commands, key=lambda c: c.words)
    firsts = sorted({c.words[0] for c in infos})
    lines.append(f"set -l __fish_{name}_commands {' '.join(firsts)}")
    top = f"not {seen} $__fish_{name}_commands"
    group_help = {
        "node": "Manage node",
        "service": "Manage services",
        "computer": "Manage computer",
        "configure": "Manage configuration",
        "proxy": "Manage proxy",
        "cachelookup": "Query the networkcache",
        "cache": "Query the networkcache",
    }
    for first in firsts:
        if first in group_help:
            lines.append(f"complete -c {name} -f -n '{top}' -a '{first}' -d '{group_help[first]}'")
    for info in infos:
        if info.hidden:
            continue
        first = info.words[0]
        if len(info.words) == 1:
            cond, own = top, f"{seen} {first}"
        else:
            second = info.words[1]
            siblings = sorted({c.words[1] for c in infos if c.words[0] == first and c.words[1:]})
            cond = f"{seen} {first}; and not {seen} " + " ".join(siblings)
            own = f"{seen} {first}; and {seen} {second}"
        text = _fish_escape(info.help)
        lines.append(f"## command {info.name}")
        lines.append(f"complete -c {name} -f -n '{cond}' -a '{info.words[-1]}' -d '{text}'")
        for action in info.parser._actions:
            hidden_global = action.default == argparse.SUPPRESS and action.dest != "help"
            if not action.option_strings or hidden_global:
                continue
            parts = [f"complete -c {name} -n '{own}'"]
            if action.nargs != 0:
                parts.append("-r")
            for opt in action.option_strings:
                parts.append(f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}")
            parts.append(f"-d '{_fish_escape(' '.join((action.help or '').split()))}'")
            lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def run_complete(args: argparse.Namespace, ctx: Context) -> int:
    root: SlapOSArgumentParser = args.root_parser
    if args.shell == "bash":
        ctx.stdout.write(bash_completion(root, args.name))
    elif args.shell == "fish":
        ctx.stdout.write(fish_completion(root, args.name))
    else:
        for var, words in completion_data(root):
            ctx.stdout.write(f"  {var}='{words}'\n")
    return 0
