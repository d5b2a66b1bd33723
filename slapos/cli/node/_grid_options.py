"""Options shared by `node software|instance|report|promise` (upstream's slapgrid options)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from slapos.cli._common import partition_count

if TYPE_CHECKING:
    from slapos.cli.context import Context
    from slapos.config import NodeConfig

PIDFILE_DEFAULTS = {
    "software": "/opt/slapos/slapgrid-sr.pid",
    "instance": "/opt/slapos/slapgrid-cp.pid",
    "report": "/opt/slapos/slapgrid-ur.pid",
}


def add_slapgrid_options(
    parser: argparse.ArgumentParser, pid_kind: str, *, buildout_debug: bool = False
) -> None:
    """Upstream's slapgrid options; with `buildout_debug`, --buildout-debug last (the
    commands that run buildout: node software and node instance)."""
    parser.add_argument("--instance-root", help="The instance root directory location.")
    parser.add_argument("--software-root", help="The software_root directory location.")
    parser.add_argument("--master-url", help="The master server URL. Mandatory.")
    parser.add_argument("--computer-id", help="The computer id defined in the server.")
    parser.add_argument(
        "--supervisord-socket", help="The socket supervisor will use (accepted, not used)."
    )
    parser.add_argument(
        "--supervisord-configuration-path",
        help="The location where supervisord configuration will be stored (accepted, not used).",
    )
    parser.add_argument("--buildout", help="Location of buildout binary.")
    parser.add_argument(
        "--pidfile",
        help="The location where pidfile will be created. Can be provided by configuration "
        f"file as option `pidfile_{pid_kind}` in slapos section, otherwise defaults to "
        f"{PIDFILE_DEFAULTS[pid_kind]}",
    )
    parser.add_argument(
        "--key_file", "--key-file", dest="key_file", help="SSL Authorisation key file."
    )
    parser.add_argument(
        "--cert_file", "--cert-file", dest="cert_file", help="SSL Authorisation certificate file."
    )
    parser.add_argument(
        "--signature_private_key_file",
        "--signature-private-key-file",
        dest="signature_private_key_file",
        help="Signature private key file.",
    )
    parser.add_argument(
        "--master_ca_file",
        "--master-ca-file",
        dest="master_ca_file",
        help="Root certificate of SlapOS master key.",
    )
    parser.add_argument(
        "--certificate_repository_path",
        "--certificate-repository-path",
        dest="certificate_repository_path",
        help="Path to directory where downloaded certificates would be stored.",
    )
    parser.add_argument(
        "--maximum-periodicity",
        type=partition_count,
        help="Periodicity at which buildout should be run in instance.",
    )
    parser.add_argument(
        "--promise-timeout",
        type=partition_count,
        help="Promise timeout in seconds (default: [slapos] promise_timeout, else 20)",
    )
    parser.add_argument(
        "--partition-timeout", type=partition_count, help="Partition timeout in seconds (optional)"
    )
    parser.add_argument(
        "--now", action="store_true", help="Launch slapgrid without delay. Default behavior."
    )
    parser.add_argument(
        "--maximal_delay",
        "--maximal-delay",
        dest="maximal_delay",
        type=partition_count,
        help="Deprecated. Will only work from configuration file in the future.",
    )
    if buildout_debug:
        parser.add_argument(
            "--buildout-debug",
            action="store_true",
            help="Run buildout in debug mode (with -D command line switch)",
        )


def random_delay(args: argparse.Namespace, config: NodeConfig, ctx: Context) -> None:
    """Sleep up to [slapos] maximal_delay seconds unless --now (spreads the load of many
    nodes' cron runs on the master)."""
    if getattr(args, "now", False) or config.maximal_delay <= 0:
        return
    import random

    delay = random.randint(1, config.maximal_delay)
    ctx.stderr.write(f"sleeping {delay}s before starting (maximal_delay)\n")
    ctx.clock.sleep(delay)


def slapgrid_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line values that override slapos.cfg (None = not given)."""
    keys = (
        "instance_root",
        "software_root",
        "master_url",
        "computer_id",
        "buildout",
        "key_file",
        "cert_file",
        "master_ca_file",
        "certificate_repository_path",
        "maximum_periodicity",
        "promise_timeout",
        "partition_timeout",
        "maximal_delay",
    )
    from pathlib import Path

    values: dict[str, Any] = {k: getattr(args, k, None) for k in keys}
    for key in ("instance_root", "software_root", "certificate_repository_path"):
        if values[key] is not None:
            values[key] = Path(values[key])
    if getattr(args, "buildout_debug", False):
        values["buildout_debug"] = True
    return values
