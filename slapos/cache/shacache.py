"""Networkcache client: shacache (content by sha512) and shadir (signed metadata by key).

The wire protocol is upstream's (slapos.libnetworkcache), so this client works against any
shacache/shadir and upstream's client works against slapos.cache.server:

* ``GET  <cache>/<sha512>``     -> the bytes (checked against the sha512 while reading);
* ``POST <cache>``              -> store the body; answers 201 with its sha512 as the body;
* ``GET  <dir>/<key>``          -> JSON list of ``[metadata_json, signature]`` pairs;
* ``PUT  <dir>/<key>``          -> add the JSON pair ``[metadata_json, signature]``; 201.

``signature`` is base64 of an RSA PKCS#1 v1.5 / SHA-1 signature of ``metadata_json`` (the
exact text), made with ``signature-private-key-file`` and checked against the certificates
of ``signature-certificate-list``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from slapos.config import NetworkCacheConfig
from slapos.errors import SlapOSError

log = logging.getLogger(__name__)

#: seconds to connect / to wait for data (a dead cache must not stall a node for long).
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 300.0
#: the server may take long to digest a big upload.
UPLOAD_READ_TIMEOUT = 3600.0
CHUNK = 1 << 20


class CacheError(SlapOSError):
    """Talking to shacache/shadir failed."""


class CacheUnreachable(CacheError):
    """No connection to the cache (refused, DNS, timeout, TLS)."""


class CacheHTTPError(CacheError):
    """The cache answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class CacheNotFound(CacheHTTPError):
    """404: the cache does not know this key or sha512."""


def software_hash(sr_url: str) -> str:
    """The directory name and shadir key of a software release: md5 of its URL."""
    return hashlib.md5(sr_url.encode()).hexdigest()


def url_key(url: str) -> str:
    """Shadir key of a downloaded file (buildout's networkcache)."""
    return "file-urlmd5:" + software_hash(url)


def pypi_key(name: str, version: str) -> str:
    """Shadir key of a Python distribution (buildout's networkcache)."""
    return f"pypi:{name}={version}"


# --------------------------------------------------------------------------------------
# signatures


class Signer:
    """Signs shadir metadata with an RSA private key (upstream: SHA-1, PKCS#1 v1.5)."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        try:
            data = Path(path).read_bytes()
            key = serialization.load_pem_private_key(data, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise CacheError(f"cannot load signature-private-key-file {path}: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CacheError(f"signature-private-key-file {path}: not an RSA key")
        return cls(key)

    def sign(self, content: str) -> str:
        raw = self.key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA1())
        return base64.b64encode(raw).decode()

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class Verifier:
    """Checks shadir signatures against the trusted certificates."""

    def __init__(self, certificates: Iterable[str | bytes] = ()) -> None:
        self.keys: list[rsa.RSAPublicKey] = []
        for pem in certificates:
            data = pem.encode() if isinstance(pem, str) else pem
            try:
                key = x509.load_pem_x509_certificate(data).public_key()
            except ValueError as exc:
                log.warning(
                    "ignoring an unreadable certificate of signature-certificate-list: %s", exc
                )
                continue
            if isinstance(key, rsa.RSAPublicKey):
                self.keys.append(key)
            else:
                log.warning("ignoring a non-RSA certificate of signature-certificate-list")

    @classmethod
    def from_config(cls, config: NetworkCacheConfig) -> Verifier:
        return cls(config.signature_certificates())

    def verify(self, content: str, signature: str) -> bool:
        """True when `signature` is a valid signature of `content` by a trusted key."""
        if not signature:
            return False
        try:
            raw = base64.b64decode(signature.encode(), validate=True)
        except ValueError:
            return False
        for key in self.keys:
            try:
                key.verify(raw, content.encode(), padding.PKCS1v15(), hashes.SHA1())
            except InvalidSignature:
                continue
            return True
        return False

    def trusts(self, signer: Signer) -> bool:
        pem = signer.public_pem()
        return any(
            k.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == pem
            for k in self.keys
        )


# --------------------------------------------------------------------------------------
# the client


@dataclass(frozen=True)
class DirEntry:
    """One shadir entry: the metadata text as stored, its signature, and what we made of it."""

    raw: str
    signature: str
    verified: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sha512(self) -> str:
        value = self.metadata.get("sha512")
        return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class TLSFiles:
    """Client certificate material for an https shacache or shadir."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def requests_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.ca_file:
            kw["verify"] = self.ca_file
        if self.cert_file and self.key_file:
            kw["cert"] = (self.cert_file, self.key_file)
        elif self.cert_file:
            kw["cert"] = self.cert_file
        return kw


def _join(base: str, name: str | None = None) -> str:
    return base.rstrip("/") + ("/" + name if name else "")


class NetworkCacheClient:
    """shacache + shadir over HTTP(S); every call has a timeout; errors are CacheError."""

    def __init__(  # noqa: PLR0913 - one URL per direction and service, as the config has
        self,
        *,
        download_cache_url: str | None = None,
        download_dir_url: str | None = None,
        upload_cache_url: str | None = None,
        upload_dir_url: str | None = None,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        shacache_tls: TLSFiles | None = None,
        shadir_tls: TLSFiles | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.download_cache_url = download_cache_url
        self.download_dir_url = download_dir_url
        self.upload_cache_url = upload_cache_url
        self.upload_dir_url = upload_dir_url
        self.signer = signer
        self.verifier = verifier or Verifier()
        self.shacache_tls = shacache_tls or TLSFiles()
        self.shadir_tls = shadir_tls or TLSFiles()
        self.session = session or requests.Session()

    @classmethod
    def for_binaries(
        cls,
        config: NetworkCacheConfig,
        session: requests.Session | None = None,
        *,
        sign: bool = False,
    ) -> NetworkCacheClient:
        """A client of the binary (whole software release) cache of `config`."""
        signer = None
        if sign and config.signature_private_key_file:
            signer = Signer.from_file(config.signature_private_key_file)
        return cls(
            download_cache_url=config.download_binary_cache_url,
            download_dir_url=config.download_binary_dir_url,
            upload_cache_url=config.upload_binary_cache_url,
            upload_dir_url=config.upload_binary_dir_url,
            signer=signer,
            verifier=Verifier.from_config(config),
            shacache_tls=_tls(config, "shacache"),
            shadir_tls=_tls(config, "shadir"),
            session=session,
        )

    @classmethod
    def for_sources(
        cls, config: NetworkCacheConfig, session: requests.Session | None = None
    ) -> NetworkCacheClient:
        """A client of the source cache (buildout's downloads and eggs) of `config`."""
        return cls(
            download_cache_url=config.download_cache_url,
            download_dir_url=config.download_dir_url,
            upload_cache_url=config.upload_cache_url,
            upload_dir_url=config.upload_dir_url,
            verifier=Verifier.from_config(config),
            shacache_tls=_tls(config, "shacache"),
            shadir_tls=_tls(config, "shadir"),
            session=session,
        )

    # ---- HTTP ----------------------------------------------------------------------
    def _call(
        self,
        method: str,
        url: str,
        tls: TLSFiles,
        *,
        read_timeout: float = READ_TIMEOUT,
        **kw: Any,
    ) -> requests.Response:
        try:
            response = self.session.request(
                method, url, timeout=(CONNECT_TIMEOUT, read_timeout), **tls.requests_kwargs(), **kw
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise CacheUnreachable(f"cannot reach {url}: {short_error(exc)}") from exc
        except requests.RequestException as exc:
            raise CacheError(f"{method} {url} failed: {short_error(exc)}") from exc
        if response.status_code == 404:
            response.close()
            raise CacheNotFound(f"{url}: not found", 404)
        if not 200 <= response.status_code < 300:
            reason = response.reason
            response.close()
            raise CacheHTTPError(
                f"{method} {url}: HTTP {response.status_code} {reason}", response.status_code
            )
        return response

    # ---- shadir --------------------------------------------------------------------
    def select(self, key: str) -> list[DirEntry]:
        """Every entry of `key`, each marked verified or not; CacheNotFound if unknown."""
        if not self.download_dir_url:
            raise CacheError("no shadir URL to download from is configured")
        url = _join(self.download_dir_url, key)
        response = self._call("GET", url, self.shadir_tls)
        try:
            data = json.loads(response.content.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise CacheError(f"{url}: the answer is not JSON") from exc
        if not isinstance(data, list):
            raise CacheError(f"{url}: the answer is not a JSON list")
        entries = []
        for item in data:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                log.debug("%s: skipping a malformed entry %r", url, item)
                continue
            raw, signature = item[0], item[1] if isinstance(item[1], str) else ""
            entries.append(
                DirEntry(raw, signature, self.verifier.verify(raw, signature), _metadata(raw))
            )
        return entries

    def index(self, key: str, metadata: Mapping[str, Any]) -> None:
        """Publish a (signed, when a key is configured) entry under `key`."""
        if not self.upload_dir_url:
            raise CacheError("no shadir URL to upload to is configured")
        raw = json.dumps(dict(metadata))
        signature = self.signer.sign(raw) if self.signer else ""
        self._call(
            "PUT",
            _join(self.upload_dir_url, key),
            self.shadir_tls,
            data=json.dumps([raw, signature]),
            headers={"Content-Type": "application/json"},
            read_timeout=UPLOAD_READ_TIMEOUT,
        ).close()

    # ---- shacache ------------------------------------------------------------------
    def download(self, sha512: str, out: IO[bytes]) -> None:
        """Write the content `sha512` to `out`, refusing it if its checksum differs."""
        if not self.download_cache_url:
            raise CacheError("no shacache URL to download from is configured")
        url = _join(self.download_cache_url, sha512)
        response = self._call("GET", url, self.shacache_tls, stream=True)
        digest = hashlib.sha512()
        try:
            for chunk in response.iter_content(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        except requests.RequestException as exc:
            raise CacheUnreachable(f"download of {url} interrupted: {short_error(exc)}") from exc
        finally:
            response.close()
        if digest.hexdigest() != sha512:
            raise CacheError(f"{url}: the content does not match its sha512 (corrupt cache?)")

    def has(self, sha512: str) -> bool:
        """True when the upload shacache already holds `sha512`."""
        assert self.upload_cache_url
        try:
            self._call(
                "GET", _join(self.upload_cache_url, sha512), self.shacache_tls, stream=True
            ).close()
        except CacheNotFound:
            return False
        except CacheHTTPError:
            return False  # some caches refuse GET on upload URLs: just upload
        return True

    def upload(
        self, content: IO[bytes], key: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Store `content` (a seekable file) and, with `key`, index it; returns its sha512."""
        if not self.upload_cache_url:
            raise CacheError("no shacache URL to upload to is configured")
        digest = hashlib.sha512()
        content.seek(0)
        for chunk in iter(lambda: content.read(CHUNK), b""):
            digest.update(chunk)
        sha512 = digest.hexdigest()
        size = content.tell()
        if not self.has(sha512):
            content.seek(0)
            response = self._call(
                "POST",
                _join(self.upload_cache_url),
                self.shacache_tls,
                data=content,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                read_timeout=UPLOAD_READ_TIMEOUT,
            )
            answer = response.content.strip()
            response.close()
            if response.status_code != 201 or answer != sha512.encode():
                raise CacheError(
                    f"shacache did not store the upload (HTTP {response.status_code}, "
                    f"answer {answer[:140]!r})"
                )
        if key is not None:
            self.index(key, {"sha512": sha512, **(metadata or {})})
        return sha512


def _tls(config: NetworkCacheConfig, service: str) -> TLSFiles:
    return TLSFiles(
        getattr(config, f"{service}_ca_file"),
        getattr(config, f"{service}_cert_file"),
        getattr(config, f"{service}_key_file"),
    )


def _metadata(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # urllib3 buries the cause ("[Errno 111] Connection refused") in a long repr
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip().lower()
    return text if len(text) < 300 else text[:297] + "..."
