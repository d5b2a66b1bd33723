"""The local shacache/shadir server, over HTTP in a thread."""

from __future__ import annotations

import hashlib
import json

import requests

from tests.fixtures.cache import RunningCache


def test_content_round_trip(cache: RunningCache) -> None:
    data = b"x" * 100_000
    sha = hashlib.sha512(data).hexdigest()
    assert requests.get(f"{cache.cache_url}/{sha}", timeout=10).status_code == 404
    answer = requests.post(cache.cache_url, data=data, timeout=10)
    assert answer.status_code == 201 and answer.text == sha
    got = requests.get(f"{cache.cache_url}/{sha}", timeout=10)
    assert got.status_code == 200 and got.content == data
    # resumable: the upstream client asks for the rest with a Range header
    rest = requests.get(f"{cache.cache_url}/{sha}", headers={"Range": "bytes=99000-"}, timeout=10)
    assert rest.status_code == 206 and rest.content == data[99000:]
    assert oct((cache.content / sha).stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in cache.content.iterdir()] == [sha]  # no temporary file left


def test_put_checks_the_checksum(cache: RunningCache) -> None:
    sha = hashlib.sha512(b"right").hexdigest()
    assert requests.put(f"{cache.cache_url}/{sha}", data=b"wrong", timeout=10).status_code == 400
    assert requests.put(f"{cache.cache_url}/{sha}", data=b"right", timeout=10).status_code == 201
    assert requests.get(f"{cache.cache_url}/{sha}", timeout=10).content == b"right"


def test_not_a_sha512_is_not_found(cache: RunningCache) -> None:
    assert requests.get(f"{cache.cache_url}/..%2F..%2Fetc%2Fpasswd", timeout=10).status_code == 404
    assert requests.get(f"{cache.cache_url}/abc", timeout=10).status_code == 404


def _entry(sha: str, **extra: str) -> str:
    return json.dumps([json.dumps({"sha512": sha, **extra}), "c2lnbmF0dXJl"])


def test_dir_entries_accumulate(cache: RunningCache) -> None:
    """Binaries of one release for two systems coexist (upstream's proxy kept only one)."""
    a, b = "a" * 128, "b" * 128
    url = f"{cache.dir_url}/0123456789abcdef0123456789abcdef"
    assert requests.get(url, timeout=10).status_code == 404
    for sha, os_name in ((a, "debian"), (b, "ubuntu"), (a, "debian")):
        answer = requests.put(url, data=_entry(sha, os=os_name), timeout=10)
        assert answer.status_code == 201
    entries = requests.get(url, timeout=10).json()
    assert [json.loads(e[0])["os"] for e in entries] == ["ubuntu", "debian"]  # re-upload replaced


def test_dir_refuses_bad_entries_and_keys(cache: RunningCache) -> None:
    url = f"{cache.dir_url}/key"
    assert requests.put(url, data="not json", timeout=10).status_code == 400
    assert requests.put(url, data='["only one"]', timeout=10).status_code == 400
    assert requests.put(url, data='["{}", ""]', timeout=10).status_code == 400  # no sha512
    assert (
        requests.put(f"{cache.dir_url}/.hidden", data=_entry("a" * 128), timeout=10).status_code
        == 400
    )
    assert (
        requests.put(
            f"{cache.dir_url}/pypi:slapos.core=1.26.1", data=_entry("a" * 128), timeout=10
        ).status_code
        == 201
    )


def test_update_drops_entries_without_content(cache: RunningCache) -> None:
    data = b"kept"
    sha = requests.post(cache.cache_url, data=data, timeout=10).text
    requests.put(f"{cache.dir_url}/kept", data=_entry(sha), timeout=10)
    requests.put(f"{cache.dir_url}/gone", data=_entry("f" * 128), timeout=10)
    answer = requests.post(cache.url + "/update", timeout=10).json()
    assert answer == {"removed": ["gone"], "updated": []}
    assert requests.get(f"{cache.dir_url}/gone", timeout=10).status_code == 404
    assert requests.get(f"{cache.dir_url}/kept", timeout=10).status_code == 200


def test_mirror_fetches_from_upstream_once(cache: RunningCache, tmp_path) -> None:
    from tests.fixtures.cache import serve_cache

    sha = requests.post(cache.cache_url, data=b"upstream data", timeout=10).text
    requests.put(f"{cache.dir_url}/k", data=_entry(sha), timeout=10)
    with serve_cache(
        tmp_path / "mirror", upstream_cache_url=cache.cache_url, upstream_dir_url=cache.dir_url
    ) as mirror:
        assert requests.get(f"{mirror.dir_url}/k", timeout=10).json()[0][1] == "c2lnbmF0dXJl"
        assert requests.get(f"{mirror.cache_url}/{sha}", timeout=10).content == b"upstream data"
        assert (mirror.content / sha).exists() and (mirror.metadata / "k").exists()
        assert requests.get(f"{mirror.dir_url}/missing", timeout=10).status_code == 404
