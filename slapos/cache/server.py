"""A local shacache/shadir: a WSGI application a small fleet shares its builds through.

Paths are relative to where the application is mounted (the proxy mounts it under
``/shacache/``):

* ``GET|HEAD /cache/<sha512>``  the content (``Range: bytes=N-`` honoured);
* ``POST /cache`` (or ``/cache/``) store the body, 201 with its sha512;
* ``PUT /cache/<sha512>``       store the body if it matches the sha512, 201;
* ``GET /dir/<key>``            JSON list of ``[metadata_json, signature]`` entries;
* ``PUT /dir/<key>``            add one ``[metadata_json, signature]`` entry, 201;
* ``POST /update``              drop entries whose content is gone (or refresh them
  from upstream); answers ``{"removed": [...], "updated": [...]}``.

With ``upstream_cache_url`` / ``upstream_dir_url`` it is a caching mirror: what it does not
hold is fetched from upstream once, stored, and served.

Differences from upstream's proxy blueprint (on purpose): a ``PUT /dir/<key>`` adds the entry
to the key's list (as a real shadir does; upstream's proxy replaced the list, so binaries for
two distributions could not coexist); every write is atomic (temporary file + rename) and
streamed (no upload is held in memory); keys that could escape the metadata directory are
refused. ``signing_key_path`` is accepted for configuration compatibility; upstream does not
use it either (entries are signed by the uploader, never by the cache).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_SHA512 = re.compile(r"^[0-9a-f]{128}$")
#: shadir keys: "<md5>", "file-urlmd5:<md5>", "pypi:name=1.0", "slapos-buildout-..." ...
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:=+,@%~-]{0,254}$")
CHUNK = 1 << 20
MAX_DIR_ENTRY = 1 << 20  # a shadir entry is a few hundred bytes; refuse absurd ones

_STATUS = {
    200: "200 OK",
    201: "201 Created",
    206: "206 Partial Content",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    411: "411 Length Required",
    413: "413 Payload Too Large",
    416: "416 Range Not Satisfiable",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
}


class _Reply(Exception):
    def __init__(self, status: int, body: str = "") -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body or _STATUS[status][4:]


class CacheServer:
    """The storage and the request handling behind `create_cache_app`."""

    def __init__(
        self,
        content_directory: Path,
        metadata_directory: Path,
        signing_key_path: Path | None = None,
        upstream_cache_url: str | None = None,
        upstream_dir_url: str | None = None,
    ) -> None:
        self.content = Path(content_directory)
        self.metadata = Path(metadata_directory)
        self.signing_key_path = signing_key_path
        self.upstream_cache_url = upstream_cache_url or None
        self.upstream_dir_url = upstream_dir_url or None
        self._lock = threading.Lock()
        self.content.mkdir(parents=True, exist_ok=True)
        self.metadata.mkdir(parents=True, exist_ok=True)

    # ---- WSGI ------------------------------------------------------------------------
    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "") or "/"
        try:
            return self._route(method, path, environ, start_response)
        except _Reply as reply:
            return _text(start_response, reply.status, reply.body)
        except OSError as exc:
            log.error("shacache: %s %s failed: %s", method, path, exc)
            return _text(start_response, 500, "storage error")

    def _route(
        self, method: str, path: str, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["cache"] and len(parts) <= 2:
            name = parts[1] if len(parts) == 2 else None
            if method in ("GET", "HEAD") and name:
                return self._get_content(_sha(name), environ, start_response, method == "HEAD")
            if method == "POST" and name is None:
                sha = self._store_content(environ, None)
                return _text(start_response, 201, sha)
            if method == "PUT" and name:
                sha = self._store_content(environ, _sha(name))
                return _text(start_response, 201, sha)
            raise _Reply(405)
        if parts[:1] == ["dir"] and len(parts) == 2:
            key = _key(parts[1])
            if method in ("GET", "HEAD"):
                body = json.dumps(self.entries(key)).encode()
                start_response(
                    _STATUS[200],
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                )
                return [] if method == "HEAD" else [body]
            if method == "PUT":
                self.add_entry(key, _read_json(environ))
                return _text(start_response, 201, "")
            raise _Reply(405)
        if parts == ["update"] and method == "POST":
            body = json.dumps(self.update()).encode()
            start_response(
                _STATUS[200],
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        raise _Reply(404)

    # ---- shacache ----------------------------------------------------------------------
    def _get_content(
        self, sha: str, environ: Environ, start_response: StartResponse, head: bool
    ) -> Iterable[bytes]:
        path = self.content / sha
        if not path.is_file():
            self._fetch_content(sha)
        size = path.stat().st_size
        start = _range_start(environ.get("HTTP_RANGE"), size)
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Accept-Ranges", "bytes"),
            ("Content-Length", str(size - start)),
        ]
        if start:
            headers.append(("Content-Range", f"bytes {start}-{size - 1}/{size}"))
        start_response(_STATUS[206 if start else 200], headers)
        if head:
            return []
        handle = open(path, "rb")  # noqa: SIM115 - closed by the WSGI server via close()
        handle.seek(start)
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            return wrapper(handle, CHUNK)  # type: ignore[no-any-return]
        return _iter_file(handle)

    def _store_content(self, environ: Environ, expected: str | None) -> str:
        stream: IO[bytes] = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH") or ""
        remaining: int | None = int(length) if length.isdigit() else None
        if remaining is None and not environ.get("wsgi.input_terminated"):
            raise _Reply(411)
        digest = hashlib.sha512()
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=self.content)
        try:
            with os.fdopen(fd, "wb") as out:
                while remaining is None or remaining > 0:
                    chunk = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
                    if not chunk:
                        break
                    if remaining is not None:
                        remaining -= len(chunk)
                    digest.update(chunk)
                    out.write(chunk)
            if remaining:
                raise _Reply(400, "incomplete body")
            sha = digest.hexdigest()
            if expected is not None and sha != expected:
                raise _Reply(400, "checksum mismatch")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.content / sha)
            tmp = ""
            log.info("shacache: stored %s", sha[:16])
            return sha
        finally:
            if tmp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _fetch_content(self, sha: str) -> None:
        if not self.upstream_cache_url:
            raise _Reply(404)
        from slapos.cache.networkcache import CacheError, CacheNotFound, NetworkCacheClient

        client = NetworkCacheClient(download_cache_url=self.upstream_cache_url)
        fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=self.content)
        try:
            with os.fdopen(fd, "wb") as out:
                log.info("shacache: fetching %s from %s", sha[:16], self.upstream_cache_url)
                client.download(sha, out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.content / sha)
            tmp = ""
        except CacheNotFound:
            raise _Reply(404) from None
        except CacheError as exc:
            log.warning("shacache: upstream failed for %s: %s", sha[:16], exc)
            raise _Reply(502, f"upstream error: {exc}") from None
        finally:
            if tmp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    # ---- shadir ------------------------------------------------------------------------
    def entries(self, key: str) -> list[list[str]]:
        """The entries of `key`; fetched from upstream (and kept) when absent here."""
        path = self.metadata / key
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = self._fetch_entries(key)
        except ValueError:
            log.warning("shadir: %s is not valid JSON; treating it as empty", path)
            data = []
        return data if isinstance(data, list) else []

    def add_entry(self, key: str, entry: Any) -> None:
        """Append one ``[metadata_json, signature]`` pair (replacing an identical one)."""
        if not (
            isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)
        ):
            raise _Reply(400, "a shadir entry is a JSON list [metadata_json, signature]")
        try:
            metadata = json.loads(entry[0])
        except ValueError:
            raise _Reply(400, "the metadata of a shadir entry must be JSON") from None
        if not isinstance(metadata, dict) or not isinstance(metadata.get("sha512"), str):
            raise _Reply(400, "the metadata of a shadir entry needs a sha512")
        with self._locked(key):
            current = self._read_local(key)
            current = [e for e in current if not (isinstance(e, list) and e[:1] == entry[:1])]
            current.append(entry)
            self._write_entries(key, current)
        log.info("shadir: indexed %s under %s", metadata["sha512"][:16], key)

    def update(self) -> dict[str, list[str]]:
        """Drop entries whose content is gone, or refresh every key from upstream."""
        removed: list[str] = []
        updated: list[str] = []
        for path in sorted(self.metadata.iterdir()):
            key = path.name
            if not path.is_file() or key.startswith(".") or not _KEY.match(key):
                continue
            if self.upstream_dir_url:
                try:
                    fresh = self._fetch_entries(key, store=False)
                except _Reply as reply:
                    if reply.status != 404:
                        continue
                    fresh = []
                with self._locked(key):
                    if fresh:
                        self._write_entries(key, fresh)
                        updated.append(key)
                    else:
                        path.unlink(missing_ok=True)
                        removed.append(key)
                continue
            with self._locked(key):
                current = self._read_local(key)
                kept = [e for e in current if self._has_content(e)]
                if len(kept) == len(current):
                    continue
                if kept:
                    self._write_entries(key, kept)
                else:
                    path.unlink(missing_ok=True)
                removed.append(key)
        return {"removed": removed, "updated": updated}

    def _has_content(self, entry: Any) -> bool:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            return False
        try:
            sha = json.loads(entry[0]).get("sha512", "")
        except (ValueError, AttributeError):
            return False
        return isinstance(sha, str) and bool(_SHA512.match(sha)) and (self.content / sha).is_file()

    def _fetch_entries(self, key: str, *, store: bool = True) -> list[Any]:
        if not self.upstream_dir_url:
            raise _Reply(404)
        from slapos.cache.networkcache import CacheError, CacheNotFound, NetworkCacheClient

        client = NetworkCacheClient(download_dir_url=self.upstream_dir_url)
        try:
            log.info("shadir: fetching %s from %s", key, self.upstream_dir_url)
            entries = [[e.raw, e.signature] for e in client.select(key)]
        except CacheNotFound:
            raise _Reply(404) from None
        except CacheError as exc:
            log.warning("shadir: upstream failed for %s: %s", key, exc)
            raise _Reply(502, f"upstream error: {exc}") from None
        if store:
            with self._locked(key):
                self._write_entries(key, entries)
        return entries

    def _read_local(self, key: str) -> list[Any]:
        try:
            data = json.loads((self.metadata / key).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return []
        return data if isinstance(data, list) else []

    def _write_entries(self, key: str, entries: list[Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".entry-", dir=self.metadata)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(entries, out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.metadata / key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """One writer per key, across threads and across processes sharing the directory."""
        with self._lock, open(self.metadata / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def create_cache_app(
    content_directory: Path,
    metadata_directory: Path,
    signing_key_path: Path | None = None,
    upstream_cache_url: str | None = None,
    upstream_dir_url: str | None = None,
) -> WSGIApp:
    """A WSGI callable serving ``/cache/...`` and ``/dir/...`` from these directories."""
    return CacheServer(
        content_directory,
        metadata_directory,
        signing_key_path,
        upstream_cache_url,
        upstream_dir_url,
    )


# ---- helpers -------------------------------------------------------------------------


def _sha(name: str) -> str:
    if not _SHA512.match(name):
        raise _Reply(404)
    return name


def _key(name: str) -> str:
    if not _KEY.match(name):
        raise _Reply(400, "invalid shadir key")
    return name


def _read_json(environ: Environ) -> Any:
    length = environ.get("CONTENT_LENGTH") or ""
    if not length.isdigit():
        raise _Reply(411)
    if int(length) > MAX_DIR_ENTRY:
        raise _Reply(413)
    raw = environ["wsgi.input"].read(int(length))
    try:
        return json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise _Reply(400, "the body is not JSON") from None


def _range_start(header: str | None, size: int) -> int:
    if not header:
        return 0
    match = re.fullmatch(r"\s*bytes=(\d+)-\s*", header)
    if not match:
        return 0  # unsupported range forms: send everything, which a client must accept
    start = int(match.group(1))
    if start >= size and size:
        raise _Reply(416)
    return start


def _iter_file(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        yield from iter(lambda: handle.read(CHUNK), b"")


def _text(start_response: StartResponse, status: int, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        _STATUS[status],
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]
