"""The supervisord event listener that bangs the master when a watched service dies.

supervisord runs it as `python -m slapos.grid.watchdog --master-url URL --computer-id ID
--instance-root DIR [--certificate-repository-path DIR]` (upstream's `slapos-watchdog`;
its `--instance-root-path` spelling is accepted too). Only processes whose name contains
`-on-watch` (the programs of `etc/service/`) are watched, and a partition bangs at most
once per successful deployment: `.slapos_latest_bang_timestamp` remembers the `.timestamp`
it banged for (node.md §7.5).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from slapos.config import MasterAccess

log = logging.getLogger(__name__)

WATCHDOG_MARK = "-on-watch"
EVENTS = ("PROCESS_STATE_EXITED", "PROCESS_STATE_FATAL")
BANG_FILE = ".slapos_latest_bang_timestamp"
TIMESTAMP_FILE = ".timestamp"

BangFunction = Callable[[str, str], None]  # (partition id, message)


def parse_tokens(text: str) -> dict[str, str]:
    """`a:1 b:2` -> {'a': '1', 'b': '2'} (supervisor's header and payload format)."""
    result = {}
    for token in text.split():
        key, _, value = token.partition(":")
        result[key] = value
    return result


def _read_int(path: Path) -> int | None:
    try:
        return int(float(path.read_text().strip()))
    except (OSError, ValueError):
        return None


@dataclass
class Watchdog:
    bang: BangFunction
    instance_root: Path | None = None

    def already_banged(self, partition_id: str) -> bool:
        """True if the partition banged since its last successful deployment."""
        if self.instance_root is None:
            return False
        home = self.instance_root / partition_id
        if not (home / BANG_FILE).exists():
            return False
        deployed = _read_int(home / TIMESTAMP_FILE)
        if deployed is None:
            return True  # never deployed successfully since: nothing new to say
        last = _read_int(home / BANG_FILE) or 0
        return not deployed > last

    def remember_bang(self, partition_id: str) -> None:
        if self.instance_root is None:
            return
        home = self.instance_root / partition_id
        try:
            stamp = (home / TIMESTAMP_FILE).read_text().strip() or "0"
        except OSError:
            stamp = "0"
        (home / BANG_FILE).write_text(stamp)

    def handle(self, headers: dict[str, str], payload: str) -> None:
        if headers.get("eventname") not in EVENTS:
            return
        data = parse_tokens(payload.split("\n", 1)[0])
        process, group = data.get("processname", ""), data.get("groupname", "")
        if WATCHDOG_MARK not in process or self.already_banged(group):
            return
        message = f"{process} process in partition {group} encountered a problem"
        try:
            self.bang(group, message)
        except Exception:
            log.exception("could not bang for %s", group)
            return
        self.remember_bang(group)

    def serve(self, stdin: TextIO, stdout: TextIO) -> None:
        """supervisord's event listener protocol, until stdin closes."""
        while True:
            stdout.write("READY\n")
            stdout.flush()
            line = stdin.readline()
            if not line:
                return
            headers = parse_tokens(line)
            payload = stdin.read(int(headers.get("len", "0")))
            self.handle(headers, payload)
            stdout.write("RESULT 2\nOK")
            stdout.flush()


def master_bang(
    master: MasterAccess, computer_id: str, certificate_repository: Path | None
) -> BangFunction:
    """Bang as the partition itself: with its own key and certificate when the node keeps
    them in `certificate_repository`."""

    def bang(partition_id: str, message: str) -> None:
        from slapos.slap.entry import connect

        access = master
        if certificate_repository is not None:
            access = replace(
                master,
                key_file=str(certificate_repository / f"{partition_id}.key"),
                cert_file=str(certificate_repository / f"{partition_id}.crt"),
            )
        connect(access).registerComputerPartition(computer_id, partition_id).bang(message)

    return bang


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(prog="slapos-watchdog")
    parser.add_argument("--master-url", required=True)
    parser.add_argument("--computer-id", required=True)
    parser.add_argument("--certificate-repository-path")
    parser.add_argument("--instance-root", "--instance-root-path", dest="instance_root")
    parser.add_argument("--master-ca-file")
    parser.add_argument("--no-master-tls-verify", dest="master_tls_verify", action="store_false")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    repo = Path(args.certificate_repository_path) if args.certificate_repository_path else None
    watchdog = Watchdog(
        master_bang(
            MasterAccess(
                args.master_url, ca_file=args.master_ca_file, tls_verify=args.master_tls_verify
            ),
            args.computer_id,
            repo,
        ),
        Path(args.instance_root) if args.instance_root else None,
    )
    watchdog.serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
