"""Binaries of software releases: upload from one software root, download into another."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from pathlib import Path

import pytest
import requests

from slapos.cache.networkcache import (
    CacheError,
    archive_software,
    binary_cache_forced,
    download_software_release,
    extract_software,
    software_hash,
    upload_software_release,
)
from slapos.cache.shacache import NetworkCacheClient, Signer, Verifier
from slapos.config import NetworkCacheConfig
from tests.fakes import FakeClock, FakeRunner
from tests.fixtures.cache import RunningCache, Signing
from tests.unit.cache.conftest import gcc_runner

URL = "https://lab.example.com/software/demo/software.cfg"
LOG = "slapos.cache.networkcache"


def built_tree(software_root: Path, url: str = URL) -> Path:
    """A software directory as a build leaves it."""
    path = software_root / software_hash(url)
    (path / "bin").mkdir(parents=True)
    (path / "parts" / "lib").mkdir(parents=True)
    prog = path / "bin" / "demo"
    prog.write_text("#!/bin/sh\necho demo\n")
    prog.chmod(0o755)
    (path / "parts" / "lib" / "blob").write_bytes(os.urandom(50_000))
    os.symlink("../parts/lib/blob", path / "bin" / "blob-link")
    (path / ".installed.cfg").write_text("[buildout]\n")
    (path / ".completed").write_text("done")
    (path / ".netrc").write_text("machine example.com password secret")
    return path


def config_for(
    cache: RunningCache, signing: Signing | None, trusted: list[str], **kw
) -> NetworkCacheConfig:
    return NetworkCacheConfig(
        download_binary_cache_url=cache.cache_url,
        download_binary_dir_url=cache.dir_url,
        upload_binary_cache_url=cache.cache_url,
        upload_binary_dir_url=cache.dir_url,
        signature_private_key_file=str(signing.key_file) if signing else None,
        signature_certificate_list="\n".join(trusted) or None,
        **kw,
    )


def test_upload_then_download_into_another_root(
    tmp_path: Path, cache: RunningCache, signing: Signing, runner: FakeRunner, caplog
) -> None:
    caplog.set_level(logging.INFO, LOG)
    config = config_for(cache, signing, [signing.cert_pem])
    source = built_tree(tmp_path / "node1")
    upload_software_release(URL, source, config, runner=runner)
    entries = NetworkCacheClient.for_binaries(config).select(software_hash(URL))
    assert len(entries) == 1 and entries[0].verified
    meta = entries[0].metadata
    assert meta["software_url"] == URL and meta["multiarch"] == "x86_64-linux-gnu"
    assert meta["software_root"] == str(tmp_path / "node1") and isinstance(meta["os"], list)

    root2 = tmp_path / "node2"
    root2.mkdir()
    target = root2 / software_hash(URL)
    assert download_software_release(URL, target, root2, config, runner=runner)
    assert (target / "bin" / "demo").read_text() == "#!/bin/sh\necho demo\n"
    assert os.access(target / "bin" / "demo", os.X_OK)
    assert os.readlink(target / "bin" / "blob-link") == "../parts/lib/blob"
    assert (target / "parts" / "lib" / "blob").read_bytes() == (
        source / "parts" / "lib" / "blob"
    ).read_bytes()
    assert (target / ".installed.cfg").exists()
    # per-node markers and secrets never travel
    assert not (target / ".completed").exists() and not (target / ".netrc").exists()
    assert sorted(os.listdir(root2)) == [software_hash(URL)]  # no staging left behind
    assert "installed " + URL + " from the binary cache" in caplog.text
    # an existing directory is never replaced
    assert not download_software_release(URL, target, root2, config, runner=runner)


def test_signature_that_does_not_verify_is_refused(
    tmp_path: Path,
    cache: RunningCache,
    signing: Signing,
    stranger: Signing,
    runner: FakeRunner,
    caplog,
) -> None:
    upload_software_release(
        URL,
        built_tree(tmp_path / "node1"),
        config_for(cache, stranger, []),
        runner=runner,
    )
    caplog.set_level(logging.INFO, LOG)
    root2 = tmp_path / "node2"
    root2.mkdir()
    config = config_for(cache, None, [signing.cert_pem])
    assert not download_software_release(
        URL, root2 / software_hash(URL), root2, config, runner=runner
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "signature does not verify" in warnings[0].getMessage()
    assert not (root2 / software_hash(URL)).exists()


def test_tampered_metadata_is_refused(
    tmp_path: Path, cache: RunningCache, signing: Signing, runner: FakeRunner
) -> None:
    config = config_for(cache, signing, [signing.cert_pem])
    upload_software_release(URL, built_tree(tmp_path / "node1"), config, runner=runner)
    entry_file = cache.metadata / software_hash(URL)
    entries = json.loads(entry_file.read_text())
    meta = json.loads(entries[0][0])
    meta["software_url"] = "https://evil.example.com/other.cfg"
    entries[0][0] = json.dumps(meta)  # the signature no longer matches the text
    entry_file.write_text(json.dumps(entries))
    root2 = tmp_path / "node2"
    root2.mkdir()
    assert not download_software_release(
        URL, root2 / software_hash(URL), root2, config, runner=runner
    )


def test_corrupt_content_is_refused(
    tmp_path: Path, cache: RunningCache, signing: Signing, runner: FakeRunner, caplog
) -> None:
    config = config_for(cache, signing, [signing.cert_pem])
    upload_software_release(URL, built_tree(tmp_path / "node1"), config, runner=runner)
    (blob,) = cache.content.iterdir()
    blob.write_bytes(b"garbage")
    root2 = tmp_path / "node2"
    root2.mkdir()
    caplog.set_level(logging.INFO, LOG)
    assert not download_software_release(
        URL, root2 / software_hash(URL), root2, config, runner=runner
    )
    assert "does not match its sha512" in caplog.text
    assert os.listdir(root2) == []


def test_unreachable_cache_one_warning(tmp_path: Path, runner: FakeRunner, caplog) -> None:
    from tests.fixtures.common import free_port

    port = free_port()
    config = NetworkCacheConfig(
        download_binary_cache_url=f"http://127.0.0.1:{port}/cache",
        download_binary_dir_url=f"http://127.0.0.1:{port}/dir",
        signature_certificate_list="whatever",
    )
    caplog.set_level(logging.INFO, LOG)
    assert not download_software_release(URL, tmp_path / "x", tmp_path, config, runner=runner)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "building from source" in warnings[0] and "connection refused" in warnings[0]


def test_not_in_cache_is_not_a_warning(
    tmp_path: Path, cache: RunningCache, signing: Signing, caplog
) -> None:
    caplog.set_level(logging.INFO, LOG)
    config = config_for(cache, None, [signing.cert_pem])
    assert not download_software_release(URL, tmp_path / "x", tmp_path, config, runner=gcc_runner())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "no binary of" in caplog.text


def test_other_platform_not_downloaded(
    tmp_path: Path, cache: RunningCache, signing: Signing
) -> None:
    config = config_for(cache, signing, [signing.cert_pem])
    upload_software_release(
        URL, built_tree(tmp_path / "node1"), config, runner=gcc_runner("aarch64-linux-gnu")
    )
    root2 = tmp_path / "node2"
    root2.mkdir()
    assert not download_software_release(
        URL, root2 / software_hash(URL), root2, config, runner=gcc_runner()
    )


def test_blacklists_and_force_list(
    tmp_path: Path, cache: RunningCache, signing: Signing, caplog
) -> None:
    caplog.set_level(logging.INFO, LOG)
    config = config_for(
        cache,
        signing,
        [signing.cert_pem],
        upload_to_binary_cache_url_blacklist=("https://lab.example.com/",),
        download_from_binary_cache_url_blacklist=("https://lab.example.com/software/",),
        download_from_binary_cache_force_url_list=("https://lab.example.com/software/demo",),
    )
    upload_software_release(URL, built_tree(tmp_path / "node1"), config, runner=gcc_runner())
    assert list(cache.content.iterdir()) == []
    assert "blacklisted" in caplog.text
    assert not download_software_release(URL, tmp_path / "x", tmp_path, config, runner=gcc_runner())
    assert binary_cache_forced(URL, config)
    assert not binary_cache_forced("https://other.example.com/software.cfg", config)


def test_shared_release_not_uploaded(tmp_path: Path, cache: RunningCache, signing: Signing) -> None:
    tree = built_tree(tmp_path / "node1")
    (tree / ".shared").write_text("")
    upload_software_release(
        URL, tree, config_for(cache, signing, [signing.cert_pem]), runner=gcc_runner()
    )
    assert list(cache.content.iterdir()) == []


def test_no_trusted_certificate_no_download(
    tmp_path: Path, cache: RunningCache, signing: Signing, caplog
) -> None:
    upload_software_release(
        URL,
        built_tree(tmp_path / "node1"),
        config_for(cache, signing, [signing.cert_pem]),
        runner=gcc_runner(),
    )
    caplog.set_level(logging.INFO, LOG)
    root2 = tmp_path / "node2"
    root2.mkdir()
    assert not download_software_release(
        URL, root2 / software_hash(URL), root2, config_for(cache, None, []), runner=gcc_runner()
    )
    assert "signature-certificate-list holds no usable certificate" in caplog.text


def test_upload_retries_on_server_errors_then_gives_up(tmp_path: Path, caplog) -> None:
    from tests.fixtures.cache import serve_wsgi

    calls = []

    def broken(environ, start_response):
        calls.append(environ["REQUEST_METHOD"])
        start_response("503 Service Unavailable", [("Content-Length", "0")])
        return [b""]

    clock = FakeClock()
    caplog.set_level(logging.INFO, LOG)
    tree = built_tree(tmp_path / "soft")
    with serve_wsgi(broken) as url:
        config = NetworkCacheConfig(
            upload_binary_cache_url=f"{url}/cache", upload_binary_dir_url=f"{url}/dir"
        )
        upload_software_release(
            URL, tree, config, runner=gcc_runner(), clock=clock, retry_delays=(1, 2)
        )
    assert clock.sleeps == [1, 2]
    assert "upload of " + URL + " to the binary cache failed" in caplog.text


def test_upload_to_unreachable_cache_does_not_retry(tmp_path: Path, caplog) -> None:
    from tests.fixtures.common import free_port

    port = free_port()
    config = NetworkCacheConfig(
        download_binary_dir_url=f"http://127.0.0.1:{port}/dir",
        upload_binary_cache_url=f"http://127.0.0.1:{port}/cache",
        upload_binary_dir_url=f"http://127.0.0.1:{port}/dir",
    )
    clock = FakeClock()
    caplog.set_level(logging.INFO, LOG)
    tree = built_tree(tmp_path / "soft")
    upload_software_release(URL, tree, config, runner=gcc_runner(), clock=clock)
    assert clock.sleeps == []
    # the download side of this server already warned: no second warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "unreachable" in w]
    assert "binary cache unreachable" in caplog.text


def _tar(members: dict[str, bytes | str]) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):  # a symlink
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o4755
                tar.addfile(info, io.BytesIO(content))
    out.seek(0)
    return out


@pytest.mark.parametrize(
    "members",
    [
        {"abc/../../evil": b"x"},
        {"other/file": b"x"},
        {"/abs": b"x"},
        {"abc/link": "/etc", "abc/link/passwd": b"x"},
    ],
)
def test_extract_refuses_escaping_members(tmp_path: Path, members: dict[str, bytes | str]) -> None:
    root = tmp_path / "soft"
    root.mkdir()
    with pytest.raises(CacheError):
        extract_software(_tar(members), root / "abc", root)
    assert os.listdir(root) == []
    assert not (tmp_path / "evil").exists()


def test_extract_drops_setuid(tmp_path: Path) -> None:
    extract_software(_tar({"abc/bin/x": b"x"}), tmp_path / "abc", tmp_path)
    assert (tmp_path / "abc" / "bin" / "x").stat().st_mode & 0o7777 == 0o755


def test_archive_layout(tmp_path: Path) -> None:
    tree = built_tree(tmp_path / "soft")
    out = io.BytesIO()
    archive_software(tree, out)
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:gz") as tar:
        names = tar.getnames()
    assert names[0] == tree.name
    assert f"{tree.name}/bin/demo" in names and f"{tree.name}/.installed.cfg" in names
    assert f"{tree.name}/.completed" not in names and f"{tree.name}/.netrc" not in names


def test_signatures(signing: Signing, stranger: Signing) -> None:
    signer = Signer.from_file(signing.key_file)
    signature = signer.sign('{"sha512": "x"}')
    assert Verifier([signing.cert_pem]).verify('{"sha512": "x"}', signature)
    assert not Verifier([signing.cert_pem]).verify('{"sha512": "y"}', signature)
    assert not Verifier([stranger.cert_pem]).verify('{"sha512": "x"}', signature)
    assert not Verifier([signing.cert_pem]).verify('{"sha512": "x"}', "")
    assert not Verifier([signing.cert_pem]).verify('{"sha512": "x"}', "not base64!")
    assert Verifier([signing.cert_pem]).trusts(signer)
    assert not Verifier([stranger.cert_pem]).trusts(signer)
    assert Verifier(["garbage"]).keys == []


def test_bad_private_key_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("nope")
    with pytest.raises(CacheError, match="signature-private-key-file"):
        Signer.from_file(tmp_path / "key")


def test_client_errors(cache: RunningCache) -> None:
    from slapos.cache.shacache import CacheNotFound

    client = NetworkCacheClient(download_dir_url=cache.dir_url, download_cache_url=cache.cache_url)
    with pytest.raises(CacheNotFound):
        client.select("nothing-here")
    (cache.metadata / "broken").write_text("{not json")
    assert client.select("broken") == []  # the server treats it as empty
    requests.put(
        f"{cache.dir_url}/mixed",
        data=json.dumps([json.dumps({"sha512": "a" * 128}), ""]),
        timeout=10,
    )
    (entry,) = client.select("mixed")
    assert not entry.verified and entry.sha512 == "a" * 128
