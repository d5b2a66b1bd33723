"""Binaries of software releases in the networkcache: what `slapos node software` uses.

The shadir key of a release is its hash (md5 of its URL), the content a gzipped tar of
``<software_root>/<hash>/``, the metadata says for which platform it was built
(slapos.cache.platform). An entry whose signature does not verify against
``signature-certificate-list`` is never installed.

`download_software_release` and `upload_software_release` are what the software engine
calls; they never raise for a cache problem: a cache is an optimisation, so on any failure
they log one line and the release is built from source.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

import requests

from slapos.cache.platform import Platform, machine_platform
from slapos.cache.shacache import (
    CacheError,
    CacheHTTPError,
    CacheNotFound,
    CacheUnreachable,
    DirEntry,
    NetworkCacheClient,
    Signer,
    TLSFiles,
    Verifier,
    pypi_key,
    short_error,
    software_hash,
    url_key,
)
from slapos.config import NetworkCacheConfig
from slapos.system import Clock, Runner, SubprocessRunner, SystemClock, retry
from slapos.wording import counted

__all__ = [
    "CacheError",
    "CacheHTTPError",
    "CacheNotFound",
    "CacheUnreachable",
    "DirEntry",
    "NetworkCacheClient",
    "Signer",
    "TLSFiles",
    "Verifier",
    "archive_software",
    "binary_cache_forced",
    "choose_binaries",
    "download_software_release",
    "entry_platform",
    "extract_software",
    "pypi_key",
    "software_hash",
    "upload_software_release",
    "url_key",
]

log = logging.getLogger(__name__)

#: files of a software directory that never go into a binary: per-node markers, secrets.
ARCHIVE_EXCLUDED = frozenset({".completed", ".netrc", ".shared"})
#: tar stream buffer: large reads keep zlib, not Python, the bottleneck.
CHUNK = 1 << 20
#: pauses between upload attempts (upstream sleeps 30 minutes, blocking the node).
UPLOAD_RETRY_DELAYS = (5.0, 30.0)

# --------------------------------------------------------------------------------------
# binaries of software releases


def entry_platform(metadata: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """(multiarch, os) of a binary entry; None when the entry says nothing usable.

    Legacy entries carry ``machine = x86_64`` and ``os`` as a Python tuple literal.
    """
    multiarch = metadata.get("multiarch")
    os_value: Any = metadata.get("os")
    if multiarch is None and metadata.get("machine") == "x86_64":
        multiarch = "x86_64-linux-gnu"
        if isinstance(os_value, str):
            import ast

            try:
                os_value = list(ast.literal_eval(os_value))
            except (ValueError, SyntaxError, TypeError):
                return None
    if not isinstance(multiarch, str) or not isinstance(os_value, list | tuple):
        return None
    return multiarch, [str(x) for x in os_value]


def is_blacklisted(sr_url: str, prefixes: Sequence[str]) -> str | None:
    """The first prefix of `prefixes` that `sr_url` starts with, if any."""
    return next((p for p in prefixes if sr_url.startswith(p)), None)


def binary_cache_forced(sr_url: str, config: NetworkCacheConfig) -> bool:
    """True when `sr_url` must come from the binary cache (never be built here)."""
    return is_blacklisted(sr_url, config.download_from_binary_cache_force_url_list) is not None


def choose_binaries(
    entries: Sequence[DirEntry], here: Platform, software_root: Path
) -> list[DirEntry]:
    """Verified entries that run here, best first (built under the same software_root).

    Logs a warning for each entry refused for its signature.
    """
    same_root: list[DirEntry] = []
    other_root: list[DirEntry] = []
    for entry in entries:
        tags = entry_platform(entry.metadata)
        if tags is None or not entry.sha512:
            log.debug(
                "skipping a binary-cache entry without platform or sha512: %s", entry.raw[:200]
            )
            continue
        if not here.accepts(*tags):
            log.debug("binary for %s %s does not run on %s %s", *tags, here.multiarch, here.os)
            continue
        if not entry.verified:
            log.warning(
                "refusing binary %s of the cache: its signature does not verify against "
                "signature-certificate-list",
                entry.sha512[:16],
            )
            continue
        if entry.metadata.get("software_root") in (None, str(software_root)):
            same_root.append(entry)
        else:
            other_root.append(entry)
    return same_root + other_root


def download_software_release(
    sr_url: str,
    sr_path: Path,
    software_root: Path,
    config: NetworkCacheConfig,
    *,
    session: requests.Session | None = None,
    runner: Runner | None = None,
) -> bool:
    """Install `sr_path` from the binary cache; True if done, False means "build it".

    Never raises for a cache problem: an unreachable cache, a missing entry, a bad
    signature or a corrupt archive each log one line and return False.
    """
    with _session(session) as http:
        return _download(sr_url, sr_path, software_root, config, http, runner)


def _download(
    sr_url: str,
    sr_path: Path,
    software_root: Path,
    config: NetworkCacheConfig,
    session: requests.Session,
    runner: Runner | None,
) -> bool:
    if sr_path.exists():
        log.debug("%s exists: not downloading it from the binary cache", sr_path)
        return False
    cache_url, dir_url = config.download_binary_cache_url, config.download_binary_dir_url
    if not (cache_url and dir_url):
        log.debug("no binary cache configured (download-binary-cache-url/-dir-url)")
        return False
    prefix = is_blacklisted(sr_url, config.download_from_binary_cache_url_blacklist)
    if prefix is not None:
        log.info("not looking for %s in the binary cache: blacklisted by %s", sr_url, prefix)
        return False
    key = software_hash(sr_url)
    client = NetworkCacheClient.for_binaries(config, session)
    log.info("looking for a binary of %s in the binary cache %s", sr_url, dir_url)
    try:
        entries = client.select(key)
    except CacheNotFound:
        log.info("no binary of %s in the binary cache", sr_url)
        return False
    except CacheError as exc:
        log.warning("binary cache not usable, building from source: %s", exc)
        return False
    if not client.verifier.keys and entries:
        log.warning(
            "the binary cache has %s of %s, but signature-certificate-list holds "
            "no usable certificate to trust them: building from source",
            counted(len(entries), "binary", "binaries"),
            sr_url,
        )
        return False
    here = machine_platform(runner or SubprocessRunner())
    chosen = choose_binaries(entries, here, software_root)
    if not chosen:
        log.info(
            "no trusted binary of %s for %s %s in the binary cache",
            sr_url,
            here.multiarch,
            " ".join(here.os),
        )
        return False
    for entry in chosen:
        try:
            _install_binary(client, entry, sr_path, software_root)
        except (CacheError, OSError, tarfile.TarError) as exc:
            log.warning(
                "cannot install binary %s of %s: %s", entry.sha512[:16], sr_url, short_error(exc)
            )
            continue
        built_in = entry.metadata.get("software_root")
        if built_in and built_in != str(software_root):
            log.warning(
                "binary of %s was built in %s, installed in %s: its absolute paths may be wrong",
                sr_url,
                built_in,
                software_root,
            )
        log.info("installed %s from the binary cache (sha512 %s...)", sr_url, entry.sha512[:16])
        return True
    return False


def _install_binary(
    client: NetworkCacheClient, entry: DirEntry, sr_path: Path, software_root: Path
) -> None:
    software_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=software_root) as archive:
        client.download(entry.sha512, archive)
        archive.seek(0)
        extract_software(archive, sr_path, software_root)


def extract_software(archive: IO[bytes], sr_path: Path, software_root: Path) -> None:
    """Unpack a binary tarball (top directory = the release hash) as `sr_path`, atomically.

    One streaming pass. Members outside that directory, device files, links leaving it and
    set-id bits are refused or dropped; files get the owner of `software_root`, as a build
    would. Nothing appears at `sr_path` unless the whole archive unpacked.
    """
    name = sr_path.name
    owner = software_root.stat()
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=software_root))
    checker = _MemberChecker(name)
    try:
        with tempfile.TemporaryFile(dir=software_root) as plain:
            # gunzip once to a plain tar: tarfile then seeks for free (on a gzip stream
            # each seek decompresses again, and its stream mode copies buffers)
            _gunzip(archive, plain)
            plain.seek(0)
            with tarfile.open(fileobj=plain, mode="r:") as tar:
                members = [m for m in tar.getmembers() if checker.accept(m)]
                for member in members:
                    member.uid, member.gid = owner.st_uid, owner.st_gid
                    member.uname = member.gname = ""
                tar.extractall(staging, members=members)
        tree = staging / name
        if not tree.is_dir():
            raise CacheError(f"the archive does not contain the directory {name}/")
        os.chmod(tree, 0o755)
        os.rename(tree, sr_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _gunzip(source: IO[bytes], out: IO[bytes]) -> None:
    """Decompress a (possibly multi-member) gzip stream."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            while chunk:
                out.write(decompressor.decompress(chunk))
                chunk = decompressor.unused_data
                if chunk:  # a new gzip member starts
                    out.write(decompressor.flush())
                    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out.write(decompressor.flush())
    except zlib.error as exc:
        raise CacheError(f"the archive is not valid gzip: {exc}") from exc


class _MemberChecker:
    """Refuses members that would land outside the release directory."""

    def __init__(self, top: str) -> None:
        self.top = top
        self.links: set[PurePosixPath] = set()

    def accept(self, member: tarfile.TarInfo) -> bool:
        top = self.top
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or path.parts[:1] != (top,):
            raise CacheError(f"the archive holds {member.name!r}, outside {top}/")
        if any(parent in self.links for parent in path.parents):
            raise CacheError(f"the archive writes through the link {member.name!r}")
        if member.isdev():
            log.debug("dropping device file %s from a binary", member.name)
            return False
        if member.islnk():
            target = PurePosixPath(member.linkname)
            if target.is_absolute() or ".." in target.parts or target.parts[:1] != (top,):
                raise CacheError(f"the archive hard-links {member.name!r} outside {top}/")
        if member.issym():
            self.links.add(path)
        member.mode &= 0o1777  # no set-uid/set-gid from a downloaded binary
        return True


def archive_software(sr_path: Path, out: IO[bytes]) -> None:
    """Write the gzipped tar of `sr_path` (top directory = its name) to `out`."""
    name = sr_path.name

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = PurePosixPath(info.name).parts
        if len(parts) == 2 and parts[1] in ARCHIVE_EXCLUDED:
            return None
        return info

    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=3) as tar:
        tar.add(sr_path, arcname=name, filter=keep)


def upload_software_release(
    sr_url: str,
    sr_path: Path,
    config: NetworkCacheConfig,
    *,
    session: requests.Session | None = None,
    runner: Runner | None = None,
    clock: Clock | None = None,
    retry_delays: Sequence[float] = UPLOAD_RETRY_DELAYS,
) -> None:
    """Upload the built `sr_path` to the binary cache when configured and allowed.

    Never raises for a cache problem: failures are logged (the build itself succeeded).
    """
    with _session(session) as http:
        _upload(sr_url, sr_path, config, http, runner, clock or SystemClock(), retry_delays)


def _upload(
    sr_url: str,
    sr_path: Path,
    config: NetworkCacheConfig,
    session: requests.Session,
    runner: Runner | None,
    clock: Clock,
    retry_delays: Sequence[float],
) -> None:
    if not (config.upload_binary_cache_url and config.upload_binary_dir_url):
        log.debug("no binary cache to upload to (upload-binary-cache-url/-dir-url)")
        return
    if (sr_path / ".shared").exists():
        log.info("not uploading %s: it uses shared parts (.shared)", sr_url)
        return
    prefix = is_blacklisted(sr_url, config.upload_to_binary_cache_url_blacklist)
    if prefix is not None:
        log.info("not uploading %s to the binary cache: blacklisted by %s", sr_url, prefix)
        return
    try:
        client = NetworkCacheClient.for_binaries(config, session, sign=True)
    except CacheError as exc:
        log.warning("not uploading %s to the binary cache: %s", sr_url, exc)
        return
    if client.signer is None:
        log.warning(
            "uploading %s unsigned (no signature-private-key-file): nodes will not trust it", sr_url
        )
    elif client.verifier.keys and not client.verifier.trusts(client.signer):
        log.warning(
            "signature-private-key-file matches no certificate of signature-certificate-list: "
            "this node will not trust its own uploads"
        )
    here = machine_platform(runner or SubprocessRunner())
    metadata = {
        "software_url": sr_url,
        "software_root": str(sr_path.parent),
        "multiarch": here.multiarch,
        "os": list(here.os),
    }
    log.info("uploading %s to the binary cache %s", sr_url, config.upload_binary_dir_url)
    try:
        with tempfile.TemporaryFile(dir=sr_path.parent) as archive:
            archive_software(sr_path, archive)

            def failed(exc: Exception, delay: float) -> None:
                log.info("upload of %s failed (%s); retrying in %.0fs", sr_url, exc, delay)

            try:
                sha512 = retry(
                    lambda: client.upload(archive, software_hash(sr_url), metadata),
                    retry_delays,
                    lambda exc: isinstance(exc, CacheHTTPError) and exc.status >= 500,
                    clock=clock,
                    on_retry=failed,
                )
            except CacheUnreachable as exc:
                # no retry: a server that refuses connections will not come back in
                # seconds; the next build uploads
                _log_unreachable_upload(config, sr_url, exc)
                return
            except CacheError as exc:
                log.warning("upload of %s to the binary cache failed: %s", sr_url, exc)
                return
            log.info("uploaded %s to the binary cache (sha512 %s...)", sr_url, sha512[:16])
    except (OSError, tarfile.TarError) as exc:
        log.warning("cannot archive %s for the binary cache: %s", sr_path, exc)


def _log_unreachable_upload(config: NetworkCacheConfig, sr_url: str, exc: CacheError) -> None:
    """One warning per unreachable cache: when the download side of the same server was
    just found unreachable (it is tried first), the upload failure is only INFO."""
    same_server = _server(config.download_binary_dir_url) == _server(config.upload_binary_dir_url)
    level = logging.INFO if same_server else logging.WARNING
    log.log(level, "%s not uploaded: binary cache unreachable: %s", sr_url, exc)


def _server(url: str | None) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc if url else ""


@contextlib.contextmanager
def _session(session: requests.Session | None) -> Iterator[requests.Session]:
    """The caller's session, or one of our own that is closed afterwards."""
    if session is not None:
        yield session
        return
    with requests.Session() as own:
        yield own
