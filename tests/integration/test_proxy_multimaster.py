"""Multi-master forwarding and the /shacache mount of our proxy."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from slapos.slap.marshal import dumps
from tests.fixtures.proxy import request_form, start_proxy
from tests.fixtures.upstream import RunningProxy, Upstream, start_upstream_proxy

SR = "http://sr.example.invalid/forwarded.cfg"


def _format(proxy: RunningProxy) -> None:
    computer = {
        "reference": proxy.computer_id, "address": "127.0.0.1", "netmask": "255.0.0.0",
        "partition_list": [{"reference": f"slappart{i}", "tap": {"name": f"tap{i}"},
                            "address_list": [{"addr": f"10.0.0.{i}", "netmask": "255.0.0.0"}]}
                           for i in range(2)],
    }  # fmt: skip
    assert requests.post(f"{proxy.url}/loadComputerConfigurationFromXML",
                         data={"xml": dumps(computer)}, timeout=30).text == "done"  # fmt: skip


def test_requests_are_forwarded_to_listed_masters(upstream: Upstream, tmp_path: Path) -> None:
    target_gen = start_upstream_proxy(upstream, tmp_path / "target", computer_id="TARGET")
    target = next(target_gen)
    ours_gen = start_proxy(
        tmp_path / "ours",
        extra_config=f"\n[multimaster/{target.url}/]\nsoftware_release_list =\n  {SR}\n",
    )
    ours = next(ours_gen)
    try:
        _format(target)
        _format(ours)
        result = upstream.python_code(
            f"""
            import json
            import slapos.slap
            slap = slapos.slap.slap()
            slap.initializeConnection({ours.url!r})
            order = slap.registerOpenOrder()
            forwarded = order.request({SR!r}, "fwd1", partition_parameter_kw={{"a": "1"}})
            by_sla = order.request("http://other/sr.cfg", "fwd2",
                                   filter_kw={{"master_url": {target.url + "/"!r}}})
            local = order.request("http://local/sr.cfg", "here")
            print(json.dumps([forwarded.getId(), forwarded._master_url,
                              forwarded.getInstanceParameterDict()["a"],
                              by_sla._master_url, local.getId(),
                              getattr(local, "_master_url", None)]))
            """
        )
        assert result.returncode == 0, result.stderr
        got = json.loads(result.stdout.splitlines()[-1])
        assert got == ["slappart0", target.url + "/", "1", target.url + "/", "slappart0", None]
        # the target master holds the forwarded instances, named after the requester
        check = upstream.python_code(
            f"""
            import slapos.slap
            slap = slapos.slap.slap()
            slap.initializeConnection({target.url!r})
            titles = sorted(p.getInstanceParameterDict().get("instance_title", "")
                            for p in slap.registerComputer("TARGET").getComputerPartitionList())
            print(titles)
            """
        )
        assert check.returncode == 0, check.stderr
        assert "'user_fwd1'" in check.stdout and "'user_fwd2'" in check.stdout
    finally:
        next(ours_gen, None)
        next(target_gen, None)


def test_unlisted_master_is_refused_and_self_is_local(proxy: RunningProxy) -> None:
    _format(proxy)
    unlisted = {"filter_xml": dumps({"master_url": "http://127.0.0.1:9/"})}
    form = request_form("x", software_release=SR, extra=unlisted)
    answer = requests.post(f"{proxy.url}/requestComputerPartition", timeout=30, data=form)
    assert answer.status_code == 404
    assert (
        answer.text == "External SlapOS Master URL http://127.0.0.1:9/ is not listed in "
        "multimaster list."
    )
    # naming this very proxy is not a forwarding (checked through /getRunId)
    answer = requests.post(
        f"{proxy.url}/requestComputerPartition",
        timeout=30,
        data={
            **form,
            "filter_xml": dumps({"master_url": proxy.url.replace("127.0.0.1", "localhost")}),
        },
    )
    assert answer.status_code == 200


def test_forwarding_failures_are_answered_with_the_reason(tmp_path: Path) -> None:
    """An https master listed without key and certificate is refused before any call; a
    listed master that cannot be reached answers 523 with why."""
    https_sr, closed_sr = (
        "http://sr.example.invalid/https.cfg",
        "http://sr.example.invalid/closed.cfg",
    )
    proxy_gen = start_proxy(
        tmp_path,
        extra_config=(
            f"\n[multimaster/https://127.0.0.1:9/]\nsoftware_release_list =\n  {https_sr}\n"
            f"\n[multimaster/http://127.0.0.1:9/]\nsoftware_release_list =\n  {closed_sr}\n"
        ),
    )
    proxy = next(proxy_gen)
    try:
        _format(proxy)

        def request(url: str) -> requests.Response:
            form = {
                "software_release": url, "software_type": "default",
                "partition_reference": "x", "partition_parameter_xml": dumps({}),
                "state": dumps(None), "shared_xml": dumps(False), "filter_xml": dumps({}),
            }  # fmt: skip
            return requests.post(f"{proxy.url}/requestComputerPartition", data=form, timeout=30)

        answer = request(https_sr)
        assert answer.status_code == 404
        assert answer.text == (
            "External master https://127.0.0.1:9/ configuration did not specify key or certificate."
        )
        answer = request(closed_sr)
        assert answer.status_code == 523
        assert answer.text.startswith("cannot reach master http://127.0.0.1:9/: ")
    finally:
        next(proxy_gen, None)


def test_shacache_mount(tmp_path: Path) -> None:
    plain_gen = start_proxy(tmp_path / "plain")
    plain = next(plain_gen)
    try:
        answer = requests.get(f"{plain.url}/shacache/cache/0123", timeout=10)
        assert answer.status_code == 404 and "shacache-content-directory" in answer.text
    finally:
        next(plain_gen, None)
    content, metadata = tmp_path / "content", tmp_path / "metadata"
    content.mkdir()
    metadata.mkdir()
    cache_gen = start_proxy(
        tmp_path / "cache",
        extra_config=f"shacache-content-directory = {content}\n"
        f"shacache-metadata-directory = {metadata}\n",
    )
    cache = next(cache_gen)
    try:
        missing = requests.get(f"{cache.url}/shacache/cache/{'0' * 128}", timeout=10)
        assert missing.status_code == 404
        assert "shacache-content-directory" not in missing.text  # answered by the cache server
        body = b"some binary content"
        upload = requests.post(f"{cache.url}/shacache/cache", data=body, timeout=10)
        assert upload.status_code in (200, 201), upload.text
        digest = upload.text.strip()
        assert requests.get(f"{cache.url}/shacache/cache/{digest}", timeout=10).content == body
    finally:
        next(cache_gen, None)
