"""`slapos cachelookup binary-sr|url|pypi` and the seed's `cache lookup`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import requests

from slapos.cache.lookup import release_md5, render_table
from slapos.cache.networkcache import software_hash, upload_software_release
from slapos.cache.platform import distribution_tuple
from slapos.cache.shacache import NetworkCacheClient, Signer
from slapos.cli.context import Context
from slapos.cli.main import main
from slapos.config import NetworkCacheConfig
from tests.fixtures.cache import RunningCache, Signing
from tests.unit.cache.conftest import gcc_runner

URL = "https://lab.example.com/software/demo/software.cfg"


def test_table_is_upstreams() -> None:
    """The example table of cli.md §7.6, cell for cell."""
    rows = [
        ["x86_64-linux-gnu", "Ubuntu", "22.04", "jammy", "no", "no"],
        ["x86_64-linux-gnu", "debian", "12", "", "yes", "no"],
    ]
    headers = ["multiarch", "distribution", "version", "id", "compatible?", "verified?"]
    assert render_table(headers, rows) == [
        "-------------------------------------------------------------------",
        "    multiarch     distribution version   id  compatible? verified?",
        "-------------------------------------------------------------------",
        " x86_64-linux-gnu    Ubuntu     22.04  jammy      no         no",
        " x86_64-linux-gnu    debian       12             yes         no",
        "-------------------------------------------------------------------",
    ]


def test_release_md5() -> None:
    assert release_md5(URL) == software_hash(URL)
    assert release_md5("0123456789abcdef0123456789abcdef") == "0123456789abcdef0123456789abcdef"


def write_config(tmp_path: Path, cache: RunningCache, signing: Signing) -> Path:
    cert = signing.cert_pem.strip().replace("\n", "\n  ")
    path = tmp_path / "slapos.cfg"
    path.write_text(
        textwrap.dedent(
            f"""\
            [slapos]
            computer_id = COMP-1

            [networkcache]
            download-binary-cache-url = {cache.cache_url}
            download-binary-dir-url = {cache.dir_url}
            download-cache-url = {cache.cache_url}
            download-dir-url = {cache.dir_url}
            signature-certificate-list =
            """
        )
        + f"  {cert}\n"
    )
    return path


def run(tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    ctx = Context.for_test(tmp_path, runner=gcc_runner())
    code = main(list(argv), ctx=ctx)
    return code, ctx.stdout.getvalue(), ctx.stderr.getvalue()


@pytest.mark.parametrize("words", [("cachelookup", "binary-sr"), ("cache", "lookup")])
def test_binary_sr_table(
    tmp_path: Path, cache: RunningCache, signing: Signing, stranger: Signing, words: tuple[str, str]
) -> None:
    cfg = write_config(tmp_path, cache, signing)
    upload = NetworkCacheConfig(
        upload_binary_cache_url=cache.cache_url,
        upload_binary_dir_url=cache.dir_url,
        signature_private_key_file=str(signing.key_file),
    )
    tree = tmp_path / "soft" / software_hash(URL)
    tree.mkdir(parents=True)
    (tree / "file").write_text("x")
    upload_software_release(URL, tree, upload, runner=gcc_runner())
    # a binary for another system, signed by an unknown key
    other = NetworkCacheClient(
        upload_cache_url=cache.cache_url,
        upload_dir_url=cache.dir_url,
        signer=Signer.from_file(stranger.key_file),
    )
    import io

    other.upload(
        io.BytesIO(b"other"),
        software_hash(URL),
        {"software_url": URL, "multiarch": "x86_64-linux-gnu", "os": ["Ubuntu", "22.04", "jammy"]},
    )
    code, out, err = run(tmp_path, *words, "--cfg", str(cfg), URL)
    assert code == 0, err
    here = distribution_tuple()
    lines = out.splitlines()
    assert lines[1].split() == [
        "multiarch",
        "distribution",
        "version",
        "id",
        "compatible?",
        "verified?",
    ]
    rows = sorted(line.split() for line in lines[3:-1])
    mine = ["x86_64-linux-gnu", *[x for x in here if x], "yes", "yes"]
    assert ["x86_64-linux-gnu", "Ubuntu", "22.04", "jammy", "no", "no"] in rows
    assert mine in rows
    assert f"Software URL: {URL}" in err and f"MD5:          {software_hash(URL)}" in err
    # the md5 works as well
    code, out2, _ = run(tmp_path, *words, "--cfg", str(cfg), software_hash(URL))
    assert code == 0 and out2 == out


def test_binary_sr_not_in_cache(tmp_path: Path, cache: RunningCache, signing: Signing) -> None:
    cfg = write_config(tmp_path, cache, signing)
    code, out, err = run(tmp_path, "cachelookup", "binary-sr", "--cfg", str(cfg), URL)
    assert code == 1 and out == ""
    assert f"software release not found in binary cache: {URL}" in err
    assert "Traceback" not in err


def test_binary_sr_empty_entry(tmp_path: Path, cache: RunningCache, signing: Signing) -> None:
    cfg = write_config(tmp_path, cache, signing)
    (cache.metadata / software_hash(URL)).write_text("[]")
    code, _, err = run(tmp_path, "cachelookup", "binary-sr", "--cfg", str(cfg), URL)
    assert code == 0 and "Object found in cache, but has no binary entries." in err


def test_unreachable_and_misconfigured(tmp_path: Path) -> None:
    from tests.fixtures.common import free_port

    port = free_port()
    cfg = tmp_path / "slapos.cfg"
    cfg.write_text(
        f"[networkcache]\ndownload-binary-cache-url = http://127.0.0.1:{port}/cache\n"
        f"download-binary-dir-url = http://127.0.0.1:{port}/dir\n"
    )
    code, _, err = run(tmp_path, "cachelookup", "binary-sr", "--cfg", str(cfg), URL)
    assert code == 1 and "problem occurred while connecting to shacache" in err
    cfg.write_text("[slapos]\n")
    code, _, err = run(tmp_path, "cachelookup", "binary-sr", "--cfg", str(cfg), URL)
    assert code == 1 and "[networkcache]" in err
    cfg.write_text("[networkcache]\n")
    code, _, err = run(tmp_path, "cachelookup", "url", "--cfg", str(cfg), URL)
    assert code == 1 and "download-dir-url is missing" in err


def test_url_and_pypi(tmp_path: Path, cache: RunningCache, signing: Signing) -> None:
    cfg = write_config(tmp_path, cache, signing)
    client = NetworkCacheClient(
        upload_cache_url=cache.cache_url,
        upload_dir_url=cache.dir_url,
        signer=Signer.from_file(signing.key_file),
    )
    import io

    src = "https://example.com/pkg-1.0.tar.gz"
    sha = client.upload(io.BytesIO(b"source"), "file-urlmd5:" + software_hash(src), {"url": src})
    client.upload(io.BytesIO(b"egg"), "pypi:demo=1.0", {"basename": "demo-1.0.tar.gz"})
    code, out, err = run(tmp_path, "cachelookup", "url", "--cfg", str(cfg), src)
    assert code == 0, err
    assert out.splitlines()[1].split() == ["url", "sha512", "signed"]
    assert out.splitlines()[3].split() == [src, sha, "True"]
    assert f"SHADIR URL: {cache.dir_url}/file-urlmd5:{software_hash(src)}" in err
    code, out, err = run(tmp_path, "cachelookup", "pypi", "--cfg", str(cfg), "demo", "1.0")
    assert code == 0 and "demo-1.0.tar.gz" in out and "Python egg demo version 1.0" in err
    code, out, err = run(tmp_path, "cachelookup", "pypi", "--cfg", str(cfg), "demo", "2.0")
    assert code == 1 and "object not found in cache" in err
    requests.put(
        f"{cache.dir_url}/pypi:empty=1",
        data=json.dumps([json.dumps({"sha512": "a" * 128}), ""]),
        timeout=10,
    )
    (cache.metadata / "pypi:empty=1").write_text("[]")
    code, out, err = run(tmp_path, "cachelookup", "pypi", "--cfg", str(cfg), "empty", "1")
    assert code == 0 and "Object found in cache, but has no entry." in err
