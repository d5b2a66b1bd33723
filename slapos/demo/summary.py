"""What the demo prints at the end: where it runs, where its files are, what to try next."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from slapos.demo.layout import SOFTWARE_NAME, DemoLayout, Users


def offer_panel(master_url: str) -> str | None:
    """The proxy's web panel, when this proxy has one."""
    url = f"{master_url}/panel/"
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return url if answer.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def slapos_command() -> str:
    """How to run this installation's `slapos` (it need not be on PATH)."""
    script = Path(sys.executable).parent / "slapos"
    if script.exists():
        return str(script)
    return f"{sys.executable} -m slapos"


def summary(layout: DemoLayout, url: str, master_url: str, invoked_as: str, users: Users) -> str:
    slapos = slapos_command()
    files = layout.settings()
    client, node = files.client_config, files.node_config
    lines = [f"Demo service:   {url}"]
    panel = offer_panel(master_url)
    if panel:
        lines.append(f"Panel:          {panel}")
    lines += [
        f"Local master:   {master_url}",
        f"Configuration:  {node} (node), {client} (client),",
        f"                {files.proxy_config} (master)",
        "Next commands (slapos is not on PATH: use its full path, or first run "
        f". {Path(sys.executable).parent}/activate):",
        f"  {slapos} service list --cfg {client}",
        f"  {slapos} service info {SOFTWARE_NAME} --cfg {client}",
        f"  {slapos} node status --cfg {node}",
        f"Run again (safe):  {invoked_as} {layout.root}{users.options()}",
        f"Stop everything:   {invoked_as} {layout.root} --stop",
        "                   (keeps DIR; any `slapos node` command, status too, starts the",
        "                   node's supervisord and the local master again)",
        f"Remove everything: {invoked_as} {layout.root} --destroy",
    ]
    return "\n".join(lines) + "\n"
