"""One computer partition on disk: its generated buildout.cfg, its certificates, its
buildout run, and its destruction (node.md §5.5–§5.9, §9.2).

Library code: no os.environ (the caller passes the environment), no printing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slapos.errors import SlapOSError
from slapos.system import Credentials, Runner

log = logging.getLogger(__name__)

#: The only mode a partition directory may have (upstream refuses anything else).
PARTITION_MODE = 0o750
SAFE_UMASK = 0o022
TAIL_BEGIN = "# This is beginning of zc.buildout profile's tail added by slapgrid"
TAIL_END = "# This is end of zc.buildout profile's tail added by slapgrid"
RETENTION_DELAY_FILE = ".slapos-retention-lock-delay"
RETENTION_DATE_FILE = ".slapos-retention-lock-date"
#: What zc.buildout 5+ appends to eggs-directory (its `eggs-directory-version` default).
EGGS_DIRECTORY_VERSION = "v5"


class PartitionError(SlapOSError):
    """A partition cannot be processed (missing directory, wrong mode, release missing)."""


@dataclass(frozen=True)
class SlapConnection:
    """The values of the [slap-connection] section of the generated buildout.cfg."""

    computer_id: str
    partition_id: str
    server_url: str
    software_release_url: str
    key_file: str = ""
    cert_file: str = ""
    shared_part_list: Sequence[str] = ()
    build_time_part_list: Sequence[str] = ()
    requested_state: str = "started"
    storage_home: str = ""
    global_ipv4_network: str = ""


def buildout_tail(c: SlapConnection) -> str:
    """The text slapgrid appends to the release's instance profile (node.md §5.6)."""

    def lines(values: Sequence[str]) -> str:
        # upstream's exact text: a continuation line even when the list is empty
        return "\n  " + "\n  ".join(values)

    return f"""{TAIL_BEGIN}
[buildout]
# put buildout generated binaries in specific directory
bin-directory = ${{buildout:directory}}/sbin

# protect software and run parts offline
offline = true

[slap-connection]
computer-id = {c.computer_id}
partition-id = {c.partition_id}
server-url = {c.server_url}
software-release-url = {c.software_release_url}
key-file = {c.key_file}
cert-file = {c.cert_file}
shared-part-list ={lines(c.shared_part_list)}
build-time-part-list ={lines(c.build_time_part_list)}
requested-state = {c.requested_state}

[slap_connection]
# Kept for backward compatibility
computer_id = {c.computer_id}
partition_id = {c.partition_id}
server_url = {c.server_url}
software_release_url = {c.software_release_url}
key_file = {c.key_file}
cert_file = {c.cert_file}

[storage-configuration]
storage-home = {c.storage_home}

[network-information]
global-ipv4-network = {c.global_ipv4_network}
{TAIL_END}
"""


def interpreter_argv(script: Path) -> list[str]:
    """`#!/path/python -S` + script, so that long shebangs (> 127 bytes) still work."""
    try:
        with open(script, encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except OSError:
        return [str(script)]
    if first.startswith("#!"):
        return [*first[2:].split(), str(script)]
    return [str(script)]


@dataclass(frozen=True)
class Partition:
    """A partition directory under instance_root and what the node knows about it."""

    partition_id: str
    path: Path
    software_url: str | None
    software_path: Path | None
    certificate_repository: Path | None = None

    @property
    def timestamp_file(self) -> Path:
        return self.path / ".timestamp"

    @property
    def error_log(self) -> Path:
        return self.path / f".slapgrid-{self.partition_id}-error.log"

    @property
    def instance_log(self) -> Path:
        return self.path / ".slapgrid" / "log" / "instance.log"

    @property
    def transaction_file(self) -> Path:
        return self.path / f".slapos-request-transaction-{self.partition_id}"

    @property
    def key_file(self) -> Path | None:
        repo = self.certificate_repository
        return repo / f"{self.partition_id}.key" if repo else None

    @property
    def cert_file(self) -> Path | None:
        repo = self.certificate_repository
        return repo / f"{self.partition_id}.crt" if repo else None

    def owner(self) -> Credentials:
        return Credentials.owner_of(self.path)

    # ---- checks and files -------------------------------------------------------------

    def check_directory(self) -> None:
        if not self.path.is_dir():
            raise PartitionError(
                f"partition directory {self.path} does not exist (run 'slapos node format')"
            )

    def write_certificates(self, certificate: str, key: str, is_root: bool) -> None:
        """Store the partition's certificate and key (mode 0400), only when they changed."""
        if self.certificate_repository is None:
            return
        owner = self.path.stat()
        for path, text in ((self.cert_file, certificate), (self.key_file, key)):
            assert path is not None
            try:
                if path.read_text() == text:
                    continue
                path.chmod(0o600)
            except FileNotFoundError:
                pass
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            if is_root:
                os.chown(tmp, owner.st_uid, owner.st_gid)
            os.replace(tmp, path)

    def prepare(self, connection: SlapConnection, retention_delay: float, is_root: bool) -> Path:
        """Everything before buildout: checks, symlink, buildout.cfg. Returns the template."""
        self.check_directory()
        assert self.software_path is not None
        owner = self.path.stat()
        link = self.path / "software_release"
        if link.is_symlink() or not link.exists():
            if link.is_symlink() and os.readlink(link) == str(self.software_path):
                pass
            else:
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
                link.symlink_to(self.software_path)
            if is_root:
                os.lchown(link, owner.st_uid, owner.st_gid)
        else:
            log.debug("%s is not a symlink, left untouched", link)
        mode = stat.S_IMODE(owner.st_mode)
        if mode != PARTITION_MODE:
            raise PartitionError(
                f"wrong permissions on {self.path}: {mode:o} instead of 750 (chmod 750 {self.path})"
            )
        if not self.software_path.is_dir():
            raise PartitionError(
                f"software release {self.software_url} is not installed "
                f"({self.software_path} missing: run 'slapos node software')"
            )
        template = self.software_path / "instance.cfg"
        if not template.exists():
            template = self.software_path / "template.cfg"
        if not template.exists():
            raise PartitionError(
                f"software release {self.software_url} is not correctly installed: "
                f"no instance.cfg in {self.software_path}"
            )
        text = template.read_text() + "\n\n" + buildout_tail(connection)
        target = self.path / "buildout.cfg"
        tmp = self.path / f".buildout.cfg.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o640)
        if is_root:
            os.chown(tmp, -1, owner.st_gid)
        os.replace(tmp, target)
        delay_file = self.path / RETENTION_DELAY_FILE
        if not delay_file.exists():
            delay_file.write_text(str(float(retention_delay)))
            if is_root:
                os.chown(delay_file, owner.st_uid, owner.st_gid)
        return template

    def buildout_binary(self, runner: Runner, environ: Mapping[str, str]) -> Path:
        """The release's bin/buildout, or sbin/buildout made by its bootstrap script."""
        from slapos.grid import buildout

        assert self.software_path is not None
        bin_dir = self.software_path / "bin"
        bootstraps = sorted(p for p in _listdir(bin_dir) if p.startswith("bootstrap"))
        if len(bootstraps) > 1:
            raise PartitionError(f"more than one bootstrap script in {bin_dir}: {bootstraps}")
        if bootstraps:
            command = buildout.Command(
                tuple(interpreter_argv(bin_dir / bootstraps[0])),
                self.path,
                buildout.clean_environment(environ, self.path),
                Credentials.owner_of(self.path),
                umask=SAFE_UMASK,
            )
            buildout.execute(command, runner=runner)
            return self.path / "sbin" / "buildout"
        binary = bin_dir / "buildout"
        if not binary.exists():
            raise PartitionError(
                f"software release {self.software_url} has no bin/buildout "
                f"({binary} missing: is it fully installed?)"
            )
        return binary

    def run_buildout(
        self,
        runner: Runner,
        environ: Mapping[str, str],
        *,
        timeout: float | None = None,
        debug: bool = False,
    ) -> None:
        """Run the instance profile as the partition's owner, in the partition.

        Output goes to the slapos.grid logger at DEBUG, hence to the partition's
        instance.log while the engine processes it.
        """
        from slapos.grid import buildout

        binary = self.buildout_binary(runner, environ)
        command = buildout.buildout_command(
            self.path,
            environ=environ,
            debug=debug,
            buildout_binary=binary,
            argv_extra=eggs_directory_arguments(self.path / "buildout.cfg"),
            launcher=offline_eggs_launcher(self.software_path),
        )
        # Instances keep upstream's umask 022: services of other users read their files.
        command = dataclasses.replace(command, umask=SAFE_UMASK)
        buildout.execute(command, runner=runner, timeout=timeout)

    # ---- destruction -----------------------------------------------------------------

    def retention_refuses(self, now: float) -> bool:
        """True while the retention delay forbids destroying this partition."""
        delay_path = self.path / RETENTION_DELAY_FILE
        date_path = self.path / RETENTION_DATE_FILE
        try:
            delay = float(delay_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            delay = 0.0
        if delay > 0 and not date_path.exists():
            date_path.write_text(str(now + delay * 86400))
        try:
            until = float(date_path.read_text().strip())
        except FileNotFoundError:
            return delay > 0
        except ValueError:
            return True  # unreadable lock: keep the data, an operator decides
        return now < until

    def empty(self) -> None:
        """Delete everything in the partition; the directory, its mode and owner stay."""
        for entry in os.scandir(self.path):
            p = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(p, onerror=_make_writable_and_retry)
            else:
                p.unlink()

    def remove_certificates(self) -> None:
        for path in (self.key_file, self.cert_file):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def eggs_directory_arguments(profile: Path) -> list[str]:
    """Buildout options that keep an offline instance on the software's eggs (zc.buildout 5+).

    zc.buildout 5+ appends `eggs-directory-version` (v5) to `eggs-directory` when it
    starts. An instance profile written the ordinary way names the software's eggs
    directory, rendered when the software was built: `<software>/eggs/v5`, already
    versioned. The instance's buildout would look in `<software>/eggs/v5/v5`, which does
    not exist, and, offline, fail with "We don't have a distribution for ...". When the
    profile's own [buildout] names an existing directory of eggs under which the versioned
    one does not exist, the version is dropped on the command line; in every other case
    (no eggs-directory, a ${...} reference, an unversioned directory) nothing is passed.
    """
    import configparser

    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(profile.read_text(encoding="utf-8", errors="replace"))
        value = parser.get("buildout", "eggs-directory", fallback="").strip()
        version = parser.get("buildout", "eggs-directory-version", fallback=None)
    except (OSError, configparser.Error) as exc:
        log.debug("cannot read eggs-directory from %s: %s", profile, exc)
        return []
    if version is not None or not value.startswith("/") or "${" in value:
        return []  # the profile chose a version itself, or names no literal path
    eggs = Path(value)
    if (eggs / EGGS_DIRECTORY_VERSION).is_dir() or not eggs.is_dir():
        return []
    log.debug("%s names versioned eggs %s: not appending %s", profile, eggs, EGGS_DIRECTORY_VERSION)
    return ["buildout:eggs-directory-version="]


def offline_eggs_launcher(software_path: Path | None) -> Path | None:
    """slapos/grid/offline_eggs.py for a release built by zc.buildout 5+ (eggs/v5), else None.

    Offline, zc.buildout 5+ does not see the eggs it installed itself (see that module).
    Releases built by older zc.buildouts (maybe for Python 2) run their bin/buildout as is.
    """
    from slapos.grid import offline_eggs

    if software_path is None or not (software_path / "eggs" / EGGS_DIRECTORY_VERSION).is_dir():
        return None
    return Path(offline_eggs.__file__)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _make_writable_and_retry(func: object, path: str, exc_info: object) -> None:
    """rmtree helper: read-only directories made by a release's build are still removed."""
    parent = os.path.dirname(path)
    with contextlib.suppress(OSError):
        os.chmod(parent, 0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def read_periodicity(software_path: Path | None, default: int, *, remove_bad: bool = True) -> int:
    """`<software>/periodicity` overrides maximum_periodicity; a bad file is removed."""
    if software_path is None:
        return default
    path = software_path / "periodicity"
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return default
    except (ValueError, OSError) as exc:
        if not remove_bad:
            return default
        log.error("removing unreadable %s: %s", path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return default


def is_up_to_date(
    partition: Partition, timestamp: str | None, periodicity: int, now: float
) -> bool:
    """Upstream's skip rule (node.md §5.4 step 10); removes a stale .timestamp."""
    if timestamp is None or periodicity == 0:
        return False
    path = partition.timestamp_file
    try:
        old = path.read_text().strip()
        mtime = path.stat().st_mtime
    except (FileNotFoundError, NotADirectoryError):
        return False
    if old == timestamp and (periodicity < 0 or now <= mtime + periodicity):
        return True
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return False
