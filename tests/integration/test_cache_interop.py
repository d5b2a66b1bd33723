"""The binary cache against upstream: slapos.libnetworkcache against our server, our client
against the shacache of upstream's proxy, upstream's `cachelookup` against our server, and
our `cachelookup` against the shacache our proxy serves."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from slapos.cache.networkcache import (
    download_software_release,
    software_hash,
    upload_software_release,
)
from slapos.cache.shacache import NetworkCacheClient, Verifier
from slapos.config import NetworkCacheConfig
from tests.fixtures.cache import RunningCache, Signing, make_signing, serve_cache
from tests.fixtures.common import REPO
from tests.fixtures.proxy import start_proxy
from tests.fixtures.upstream import RunningProxy, Upstream, start_upstream_proxy

URL = "https://lab.example.com/software/interop/software.cfg"


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Signing:
    return make_signing(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[RunningCache]:
    with serve_cache(tmp_path / "cache") as running:
        yield running


def tree(root: Path) -> Path:
    path = root / software_hash(URL)
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    return path


def binary_config(cache_url: str, dir_url: str, signing: Signing) -> NetworkCacheConfig:
    return NetworkCacheConfig(
        download_binary_cache_url=cache_url,
        download_binary_dir_url=dir_url,
        upload_binary_cache_url=cache_url,
        upload_binary_dir_url=dir_url,
        signature_private_key_file=str(signing.key_file),
        signature_certificate_list=signing.cert_pem,
    )


def test_upstream_libnetworkcache_against_our_server(
    upstream: Upstream, cache: RunningCache, signing: Signing, tmp_path: Path
) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text(signing.cert_pem)
    code = f"""
        import io, json
        from slapos.libnetworkcache import NetworkcacheClient
        nc = NetworkcacheClient({{
            'download-cache-url': {cache.cache_url!r}, 'upload-cache-url': {cache.cache_url!r},
            'download-dir-url': {cache.dir_url!r}, 'upload-dir-url': {cache.dir_url!r},
            'signature-private-key-file': {str(signing.key_file)!r},
            'signature-certificate-list': open({str(cert)!r}).read(),
        }})
        sha = nc.upload(io.BytesIO(b'payload from upstream'), 'interop-key', kind='test')
        entries = list(nc.select('interop-key'))
        data = nc.download(entries[0]['sha512']).read()
        print(json.dumps({{'sha': sha, 'entries': entries, 'data': data.decode()}}))
    """
    done = upstream.python_code(code)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["data"] == "payload from upstream"
    assert answer["entries"][0]["kind"] == "test"
    # ... and what upstream signed verifies with our client
    ours = NetworkCacheClient(
        download_dir_url=cache.dir_url,
        download_cache_url=cache.cache_url,
        verifier=Verifier([signing.cert_pem]),
    )
    (entry,) = ours.select("interop-key")
    assert entry.verified and entry.sha512 == answer["sha"]


def test_our_binary_read_by_upstream_libnetworkcache(
    upstream: Upstream, cache: RunningCache, signing: Signing, tmp_path: Path
) -> None:
    config = binary_config(cache.cache_url, cache.dir_url, signing)
    upload_software_release(URL, tree(tmp_path / "soft"), config)
    cert = tmp_path / "cert.pem"
    cert.write_text(signing.cert_pem)
    code = f"""
        import json
        from slapos.libnetworkcache import NetworkcacheClient
        nc = NetworkcacheClient({cache.cache_url!r}, {cache.dir_url!r},
            signature_certificate_list=open({str(cert)!r}).read())
        trusted = [json.loads(e) for e, s in nc.select_generic({software_hash(URL)!r})]
        print(json.dumps(trusted))
    """
    done = upstream.python_code(code)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout.splitlines()[-1])
    assert entry["software_url"] == URL and entry["multiarch"]


@pytest.fixture
def upstream_shacache(upstream: Upstream, tmp_path: Path) -> Iterator[RunningProxy]:
    directory = tmp_path / "upstream-proxy"
    extra = (
        f"shacache_content_directory = {directory}/content\n"
        f"shacache_metadata_directory = {directory}/metadata\n"
    )
    (directory / "content").mkdir(parents=True)
    (directory / "metadata").mkdir()
    yield from start_upstream_proxy(upstream, directory, extra=extra)


def test_our_client_against_upstream_proxy_shacache(
    upstream_shacache: RunningProxy, signing: Signing, tmp_path: Path
) -> None:
    base = upstream_shacache.url + "/shacache"
    config = binary_config(base + "/cache", base + "/dir", signing)
    upload_software_release(URL, tree(tmp_path / "node1"), config)
    node2 = tmp_path / "node2"
    node2.mkdir()
    assert download_software_release(URL, node2 / software_hash(URL), node2, config)
    assert (node2 / software_hash(URL) / "bin" / "tool").read_text() == "#!/bin/sh\necho tool\n"


def test_upstream_cachelookup_against_our_server(
    upstream: Upstream, cache: RunningCache, signing: Signing, tmp_path: Path
) -> None:
    upload_software_release(
        URL, tree(tmp_path / "soft"), binary_config(cache.cache_url, cache.dir_url, signing)
    )
    cfg = tmp_path / "slapos.cfg"
    cert = signing.cert_pem.strip().replace("\n", "\n  ")
    cfg.write_text(
        f"[slapos]\n[networkcache]\ndownload-binary-cache-url = {cache.cache_url}\n"
        f"download-binary-dir-url = {cache.dir_url}\nsignature-certificate-list =\n  {cert}\n"
    )
    done = upstream.run("cachelookup", "binary-sr", "--cfg", str(cfg), URL)
    assert done.returncode == 0, done.stderr
    assert f"Software URL: {URL}" in done.stderr
    row = next(
        line for line in done.stderr.splitlines() if "linux" in line and "multiarch" not in line
    )
    assert row.split()[-2:] == ["yes", "yes"]  # compatible here, and verified


def test_our_cachelookup_against_our_proxy_shacache(signing: Signing, tmp_path: Path) -> None:
    directory = tmp_path / "proxy"
    extra = textwrap.dedent(
        f"""\
        shacache-content-directory = {directory}/content
        shacache-metadata-directory = {directory}/metadata
        """
    )
    with contextlib.contextmanager(start_proxy)(directory, extra_config=extra) as running:
        base = running.url + "/shacache"
        config = binary_config(base + "/cache", base + "/dir", signing)
        upload_software_release(URL, tree(tmp_path / "soft"), config)
        cfg = tmp_path / "slapos.cfg"
        cert = signing.cert_pem.strip().replace("\n", "\n  ")
        cfg.write_text(
            f"[slapos]\n[networkcache]\ndownload-binary-cache-url = {base}/cache\n"
            f"download-binary-dir-url = {base}/dir\nsignature-certificate-list =\n  {cert}\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for words in (("cachelookup", "binary-sr"), ("cache", "lookup")):
            done = subprocess.run(
                [sys.executable, "-m", "slapos", *words, "--cfg", str(cfg), URL],
                capture_output=True,
                text=True,
                env=env,
                check=False,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            lines = done.stdout.splitlines()
            assert lines[1].split() == [
                "multiarch", "distribution", "version", "id", "compatible?", "verified?",
            ]  # fmt: skip
            assert lines[3].split()[-2:] == ["yes", "yes"]
        missing = subprocess.run(
            [sys.executable, "-m", "slapos", "cachelookup", "binary-sr", "--cfg", str(cfg),
             "https://example.com/not-there.cfg"],
            capture_output=True, text=True, env=env, check=False, timeout=60,
        )  # fmt: skip
        assert missing.returncode == 1
        assert "software release not found in binary cache" in missing.stderr
        assert "Traceback" not in missing.stderr
