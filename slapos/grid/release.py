"""One software release on disk: `<software_root>/<md5 of URL>` prepared, built, removed.

`Software` is upstream's `SlapObject.Software`: free-space check, binary cache download,
the files prepared before buildout (node.md §4.4), bootstrap and buildout as the software
user (slapos.grid.buildout), upload to the binary cache, and removal. The engine that
walks the master's list is slapos.grid.software.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from urllib.parse import unquote, urlparse

from slapos.config import NodeConfig
from slapos.errors import SlapOSError
from slapos.grid import buildout
from slapos.grid.utils import free_space, human_size, parse_size, software_hash
from slapos.system import Credentials, Runner
from slapos.wording import counted

log = logging.getLogger(__name__)

COMPLETED = ".completed"
#: Where the full buildout log of each release is kept (outside the release directory, so
#: that it survives a failed first build and never differs from upstream's layout).
LOG_DIRECTORY = ".slapgrid/log"
#: buildout's download cache, shared by every release the node builds (docs/node-software.rst).
DOWNLOAD_CACHE = ".slapgrid/download-cache"
#: Environment variable that marks every process of a build with its directory.
BUILD_MARK = "SLAPGRID_SOFTWARE_BUILD"


class SoftwareError(SlapOSError):
    """One release could not be installed; the message is the one-line reason."""


@dataclass
class Software:
    """`<software_root>/<md5 of url>`: prepare, build, destroy (upstream's Software)."""

    url: str
    config: NodeConfig
    runner: Runner
    environ: Mapping[str, str]
    force: bool = False
    debug: bool = False
    python: str = sys.executable
    on_line: Callable[[str], None] | None = None
    on_phase: Callable[[str, str], None] | None = None
    #: our effective uid: as root (0), files go to the owner of software_root
    euid: int = field(default_factory=os.geteuid)

    @property
    def path(self) -> Path:
        return self.config.software_root / software_hash(self.url)

    @property
    def download_cache(self) -> Path:
        return self.config.software_root / DOWNLOAD_CACHE

    @property
    def log_path(self) -> Path:
        return self.config.software_root / LOG_DIRECTORY / f"{software_hash(self.url)}.log"

    # ---- install ------------------------------------------------------------------
    def install(self) -> bool:
        """Build (or fetch from the binary cache) this release. True: from the cache."""
        if not self.url.strip() or any(ord(c) < 32 for c in self.url):
            # it is written into buildout.cfg: a newline would inject configuration
            raise SoftwareError(f"invalid software release URL {self.url!r}")
        self.check_free_space()
        cache = self.config.networkcache
        if not self.path.exists() and self._download_from_cache():
            return True
        from_cache_only = any(
            self.url.startswith(prefix)
            for prefix in cache.download_from_binary_cache_force_url_list
        )
        if from_cache_only:
            if self.path.exists():
                raise SoftwareError(
                    f"binary cache is forced for {self.url} but {self.path} already exists"
                )
            raise SoftwareError(
                f"binary cache is forced for {self.url} and the download failed: will retry"
            )
        self.build()
        self._upload_to_cache()
        return False

    def check_free_space(self) -> None:
        needed = parse_size(
            self.config.software_min_free_space,
            f"{self.config.path}: [slapos] software_min_free_space",
        )
        available = free_space(self.path)
        if available < needed:
            raise SoftwareError(
                f"not enough space in {self.path}: {human_size(available)} free, "
                f"{human_size(needed)} needed (option 'software_min_free_space')"
            )

    def prepare(self) -> list[str]:
        """Create the directory and its files; return buildout's extra arguments."""
        owner = self._owner()
        if owner is not None and (owner.uid == 0 or owner.gid == 0):
            raise SoftwareError(
                f"software_root {self.config.software_root} belongs to root (or group root): "
                "buildout never runs as root (chown it to the software user, e.g. slapsoft)"
            )
        if not self.path.exists():
            self.path.mkdir()
            self.path.chmod(0o755)
        self._chown(self.path, owner)
        self._copy_netrc(owner)
        extends_cache = self.path / "extends-cache"
        extends_cache.mkdir(exist_ok=True)
        self._chown(extends_cache, owner)
        self._make_download_cache(owner)
        profile = self.path / "buildout.cfg"
        if not profile.exists():
            profile.write_text(self.profile_text())
            self._chown(profile, owner)
        self._note_git_revision(profile)
        return self.buildout_arguments(extends_cache, profile)

    def _make_download_cache(self, owner: Credentials | None) -> None:
        """The node's download cache, the build's to write (as root: the software user's)."""
        cache = self.download_cache
        if cache.is_dir():
            return
        cache.parent.mkdir(exist_ok=True)
        if owner is not None:  # root's .slapgrid: the software user goes through it
            cache.parent.chmod(cache.parent.stat().st_mode | 0o111)
        cache.mkdir(mode=0o750)
        self._chown(cache, owner)

    def _note_git_revision(self, profile: Path) -> None:
        """A release from a git checkout: note its revision in buildout.cfg (upstream does).

        Appended only when it changed, so the profile tells which revision was built last.
        """
        source = local_path(self.url)
        if source is None or not source.exists():
            return
        directory = source if source.is_dir() else source.parent
        if not any((p / ".git").exists() for p in [directory, *directory.parents]):
            return
        done = self.runner.run(
            ["git", "describe", "--all", "--long", "--dirty"], cwd=directory, timeout=60
        )
        revision = done.output.strip()
        if not done.ok or not revision or "\n" in revision:
            log.debug("no git revision for %s: %s", self.url, done.output.strip())
            return
        lines = profile.read_text().splitlines()
        if lines and revision in lines[-1]:
            return
        from datetime import datetime

        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        with profile.open("a") as f:
            f.write(f"# {stamp} git revision: {revision}\n")

    def profile_text(self) -> str:
        """The generated buildout.cfg, byte for byte as upstream's ConfigParser writes it."""

        def value(key: str, items: Sequence[str]) -> str:
            # upstream passes the option's raw text (a leading newline included) through
            raw = self.config.ini.get("slapos", key) if self.config.ini is not None else None
            text = raw if raw is not None else "\n".join(items)
            return text.replace("\n", "\n\t")

        shared = value("shared_part_list", self.config.shared_part_list)
        build_time = value("build_time_part_list", self.config.build_time_part_list)
        return (
            "[buildout]\n"
            f"extends = {self.url}\n"
            f"shared-part-list = {shared}\n"
            f"build-time-part-list = {build_time}\n"
            "\n"
        )

    def buildout_arguments(self, extends_cache: Path, profile: Path) -> list[str]:
        """node.md §4.5: extends-cache, directory, networkcache options, -N, -c.

        Beyond upstream: the node-wide download cache (distributions and other downloads
        fetched once per node, not once per release).
        """
        cache = self.config.networkcache
        args = [
            f"buildout:extends-cache={extends_cache}",
            f"buildout:directory={self.path}",
            f"buildout:download-cache={self.download_cache}",
        ]
        passed = {
            "signature-private-key-file": cache.signature_private_key_file,
            "upload-cache-url": cache.upload_cache_url,
            "upload-dir-url": cache.upload_dir_url,
            "shacache-ca-file": cache.shacache_ca_file,
            "shacache-cert-file": cache.shacache_cert_file,
            "shacache-key-file": cache.shacache_key_file,
            "shadir-ca-file": cache.shadir_ca_file,
            "shadir-cert-file": cache.shadir_cert_file,
            "shadir-key-file": cache.shadir_key_file,
        }
        if cache.signature_private_key_file or cache.upload_cache_url or cache.upload_dir_url:
            args.append("buildout:networkcache-section=networkcache")
        args += [f"networkcache:{key}={val}" for key, val in passed.items() if val]
        if not self.force:
            args.append("-N")
        args += ["-c", str(profile)]
        return args

    def build(self) -> None:
        self._phase("build", "preparing")
        stop_leftover_processes(self.path)
        args = self.prepare()
        # build output may show credentials (URLs with passwords...): not world-readable
        self.log_path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"# slapos node software: {self.url}\n# {time.asctime()}\n")
        self._phase("build", "bootstrapping")
        buildout.bootstrap_and_run(
            self.path,
            runner=self.runner,
            # every process of the build inherits this mark (stop_leftover_processes)
            environ={**self.environ, BUILD_MARK: str(self.path)},
            argv_extra=args,
            log_path=self.log_path,
            on_line=self.on_line,
            debug=self.debug,
            python=self.python,
            buildout_script=self.config.buildout,
        )

    # ---- binary cache (slapos.cache.networkcache, when present) --------------------
    def _download_from_cache(self) -> bool:
        cache = self.config.networkcache
        if not (cache.download_binary_cache_url and cache.download_binary_dir_url):
            return False
        try:
            from slapos.cache import networkcache
        except ImportError:
            log.debug("binary cache client absent: building %s", self.url)
            return False
        self._phase("cache", "looking in the binary cache")
        done = networkcache.download_software_release(
            self.url, self.path, self.config.software_root, cache, runner=self.runner
        )
        if done:
            self._chown_tree(self.path, self._owner())
        return done

    def _upload_to_cache(self) -> None:
        cache = self.config.networkcache
        if not (cache.upload_binary_cache_url and cache.upload_binary_dir_url):
            return
        if (self.path / ".shared").exists():
            log.info("not uploading %s: it uses shared parts (.shared)", self.url)
            return
        try:
            from slapos.cache import networkcache
        except ImportError:
            log.debug("binary cache client absent: not uploading %s", self.url)
            return
        self._phase("cache", "uploading to the binary cache")
        networkcache.upload_software_release(self.url, self.path, cache, runner=self.runner)

    # ---- destroy ------------------------------------------------------------------
    def destroy(self) -> None:
        if self.path.exists():
            stop_leftover_processes(self.path)
            remove_tree(self.path)

    # ---- helpers ------------------------------------------------------------------
    def _phase(self, mode: str, activity: str) -> None:
        if self.on_phase is not None:
            self.on_phase(mode, activity)

    def _owner(self) -> Credentials | None:
        """Owner of software_root when we are root (files are chowned to it), else None."""
        if self.euid != 0:
            return None
        return Credentials.owner_of(self.config.software_root)

    @staticmethod
    def _chown(path: Path, owner: Credentials | None) -> None:
        if owner is not None:
            os.chown(path, owner.uid, owner.gid)

    def _chown_tree(self, path: Path, owner: Credentials | None) -> None:
        if owner is None:
            return
        for p in [path, *path.rglob("*")]:
            os.lchown(p, owner.uid, owner.gid)

    def _copy_netrc(self, owner: Credentials | None) -> None:
        """~/.netrc of the software user, copied next to the build (removed if gone)."""
        target = self.path / ".netrc"
        target.unlink(missing_ok=True)
        import pwd

        try:
            home = Path(pwd.getpwuid(self.config.software_root.stat().st_uid).pw_dir)
        except KeyError:
            return
        source = home / ".netrc"
        if source.is_file():
            shutil.copyfile(source, target)
            target.chmod(0o600)
            self._chown(target, owner)


def stop_leftover_processes(directory: Path) -> list[int]:
    """Kill what is left of an earlier build of `directory` (its slapos was killed).

    Builds run in their own process group, so when `node software` itself is killed (OOM
    killer, kill -9, a container stopped), its buildout goes on alone. The next run holds the
    lock, so a process that still carries the build mark of this directory in its
    environment is such an orphan: building over it would mix two builds. Services of
    instances never carry the mark, even when they run from the release's directory.
    """
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            mark = proc.environ().get(BUILD_MARK)
        except (psutil.Error, OSError):  # gone, a kernel thread, or not ours to read
            continue
        if mark == str(directory):
            found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=10)
    if found:
        log.warning(
            "killed %s left in %s by an interrupted build: %s",
            counted(len(found), "process", "processes"),
            directory,
            ", ".join(str(p.pid) for p in found),
        )
    return [p.pid for p in found]


def remove_tree(path: Path) -> None:
    """rm -rf that also removes read-only directories (built trees often have some)."""
    _make_writable(path)
    shutil.rmtree(path)


def _make_writable(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        return
    with contextlib.suppress(OSError):
        path.chmod(path.stat().st_mode | stat.S_IRWXU)
    with contextlib.suppress(OSError):
        for child in path.iterdir():
            _make_writable(child)


def local_path(url: str) -> Path | None:
    """The file behind a local path or file: URL, None for a remote URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and url.startswith("/"):
        return Path(url)
    return None
