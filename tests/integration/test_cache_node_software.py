"""Two nodes, one master serving the binary cache: the first builds and uploads a release,
the second installs it from the cache instead of building it (`slapos node software`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slapos.cache.shacache import NetworkCacheClient
from tests.fixtures.cache import Signing, make_signing
from tests.fixtures.proxy import start_proxy
from tests.fixtures.upstream import RunningProxy, start_upstream_proxy


@pytest.fixture(params=["ours", "upstream"])
def cache_master(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningProxy]:
    """A proxy with its shacache switched on (our spelling and upstream's)."""
    directory = tmp_path / "master"
    if request.param == "ours":
        extra = (
            f"shacache-content-directory = {directory}/content\n"
            f"shacache-metadata-directory = {directory}/metadata\n"
        )
        with contextlib.contextmanager(start_proxy)(directory, extra_config=extra) as running:
            yield running
    else:
        upstream = request.getfixturevalue("upstream")
        (directory / "content").mkdir(parents=True)
        (directory / "metadata").mkdir()
        extra = (
            f"shacache_content_directory = {directory}/content\n"
            f"shacache_metadata_directory = {directory}/metadata\n"
        )
        with contextlib.contextmanager(start_upstream_proxy)(
            upstream, directory, extra=extra
        ) as running:
            yield running


def networkcache_section(master_url: str, signing: Signing) -> str:
    base = master_url + "/shacache"
    cert = signing.cert_pem.strip().replace("\n", "\n  ")
    return (
        "\n[networkcache]\n"
        f"download-binary-cache-url = {base}/cache\n"
        f"download-binary-dir-url = {base}/dir\n"
        f"upload-binary-cache-url = {base}/cache\n"
        f"upload-binary-dir-url = {base}/dir\n"
        f"signature-private-key-file = {signing.key_file}\n"
        f"signature-certificate-list =\n  {cert}\n"
    )


def test_second_node_downloads_instead_of_building(
    cache_master: RunningProxy,
    software_node,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    signing = make_signing(tmp_path / "keys")
    extra = networkcache_section(cache_master.url, signing)
    first = software_node(cache_master, extra=extra)
    second = software_node(cache_master, extra=extra)
    url = str(first.source.path("success"))
    first.supply(url)

    started = time.monotonic()
    built = first.run()
    build_time = time.monotonic() - started
    assert built.returncode == 0, built.stderr
    assert "uploaded " in built.stderr and "to the binary cache" in built.stderr
    client = NetworkCacheClient(
        download_dir_url=cache_master.url + "/shacache/dir",
        download_cache_url=cache_master.url + "/shacache/cache",
    )
    (entry,) = client.select(first.sr_path(url).name)
    assert entry.metadata["software_url"] == url

    started = time.monotonic()
    fetched = second.run()
    fetch_time = time.monotonic() - started
    assert fetched.returncode == 0, fetched.stderr
    assert f"installed {url} from the binary cache" in fetched.stderr
    sr = second.sr_path(url)
    assert (sr / ".completed").is_file()
    assert (sr / "parts" / "hello" / "hello.txt").read_text().startswith("hello from")
    assert not second.log_path(url).exists()  # buildout never ran on the second node
    if second.user:
        assert sr.owner() == second.user
        assert (sr / "parts" / "hello" / "hello.txt").owner() == second.user
    print(f"build {build_time:.2f}s, download {fetch_time:.2f}s")


@pytest.fixture
def our_cache_master(tmp_path: Path) -> Iterator[RunningProxy]:
    """Our proxy with its shacache (the master does not matter to the refusal)."""
    directory = tmp_path / "master"
    extra = (
        f"shacache-content-directory = {directory}/content\n"
        f"shacache-metadata-directory = {directory}/metadata\n"
    )
    with contextlib.contextmanager(start_proxy)(directory, extra_config=extra) as running:
        yield running


def test_bad_signature_builds_from_source(
    our_cache_master: RunningProxy,
    software_node,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    uploader = make_signing(tmp_path / "uploader")
    other = make_signing(tmp_path / "other")
    first = software_node(
        our_cache_master, extra=networkcache_section(our_cache_master.url, uploader)
    )
    # the second node trusts another key only
    second = software_node(
        our_cache_master, extra=networkcache_section(our_cache_master.url, other)
    )
    url = str(first.source.path("success"))
    first.supply(url)
    assert first.run().returncode == 0
    result = second.run()
    assert result.returncode == 0, result.stderr
    assert "signature does not verify" in result.stderr
    assert "from the binary cache" not in result.stderr.replace("to the binary cache", "")
    assert second.log_path(url).exists()  # built from source
    assert (second.sr_path(url) / ".completed").is_file()


def test_unreachable_cache_builds_from_source(  # type: ignore[no-untyped-def]
    software_node, proxy, tmp_path: Path, closed_port: int
) -> None:
    dead = f"http://127.0.0.1:{closed_port}"
    signing = make_signing(tmp_path / "keys")
    section = networkcache_section(dead, signing)
    node = software_node(proxy, extra=section)
    url = str(node.source.path("success"))
    node.supply(url)
    result = node.run()
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "building from source" in warnings[0], result.stderr
    assert (node.sr_path(url) / ".completed").is_file()
