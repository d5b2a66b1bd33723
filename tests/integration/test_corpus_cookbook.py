"""The corpus release "cookbook" (slapos.cookbook's recipes from the package index),
deployed end to end: our node against our proxy and against upstream 1.26.1's proxy;
upstream's node builds it against our proxy.

The root instance requests a child with `request` and another with `request.serialised`
(each of its own software type), and republishes their URLs; each instance's service
answers on its partition's address. The software is built once per node flavour and per
session (tests/fixtures/corpus.py).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from tests.fixtures.common import fetch, free_port, wait_for
from tests.fixtures.corpus import Corpus, CorpusNode, built_together, node_summary
from tests.integration.test_corpus import (
    deploy,
    http_server_pids,
    master_for,
    partition_layout,
)

#: What the release leaves in a partition (every software type: same parts but the
#: requests and publish).
LAYOUT = {
    ".installed.cfg",
    "buildout.cfg",
    "software_release",
    "etc",
    "etc/service",
    "etc/service/http-server",
    "parts",
    "sbin",
    "srv",
    "srv/www",
    "srv/www/index.html",
}


def _hash(url: str) -> str:
    from slapos.grid.utils import software_hash

    return software_hash(url)


@pytest.mark.upstream
@built_together("ours", "cookbook")
@pytest.mark.parametrize(
    "master_flavour", ["ours", "upstream"], ids=["our-node-our-proxy", "our-node-upstream-proxy"]
)
def test_cookbook_release(request: pytest.FixtureRequest, master_flavour: str, corpus: Corpus,
                          corpus_node) -> None:  # fmt: skip
    master = master_for(request, master_flavour)
    cn: CorpusNode = corpus_node(master, "ours", partitions=3)
    url = corpus.url("cookbook")

    cn.node.slap().registerSupply().supply(url, master.computer_id)
    built = cn.slapos("node", "software", "--now", timeout=1200)
    assert built.returncode == 0, node_summary(built)
    software = cn.node.software_root / _hash(url)
    eggs = {p.name.split("-")[0] for p in (software / "eggs").glob("*/*.egg")}
    assert {"slapos.cookbook", "slapos.core", "netifaces"} <= eggs, eggs

    ports = {k: str(free_port()) for k in ("port", "child-port", "serialised-child-port")}
    root = cn.request(url, "root", {**ports, "name": "cookbook"})
    root_id = root.getId()
    published = deploy(cn, url, "root", "serialised-child-url")
    assert published == {
        "url": f"http://127.0.0.1:{ports['port']}/",
        "child-url": f"http://127.0.0.1:{ports['child-port']}/",
        "serialised-child-url": f"http://127.0.0.1:{ports['serialised-child-port']}/",
    }
    # each service answers, with what its own slapconfiguration read
    answers = {
        key: wait_for(partial(fetch, published[key]), 20, f"{key} to answer")
        for key in ("url", "child-url", "serialised-child-url")
    }
    assert answers["url"] == f"hello cookbook from {root_id} (default)"
    child, serialised = answers["child-url"], answers["serialised-child-url"]
    assert isinstance(child, str) and isinstance(serialised, str)
    assert child.startswith("hello child from slappart") and child.endswith(" (child)")
    assert serialised.startswith("hello serialised child from slappart")
    assert serialised.endswith(" (child-serialised)")
    ids = {root_id, child.split()[3], serialised.split()[4]}
    assert len(ids) == 3
    for partition_id in ids:
        partition = cn.node.partition(partition_id)
        assert partition_layout(partition) == LAYOUT
        # the recipes got upstream's slapos.slap, from the slapos.core egg the release
        # installed (it comes first on sys.path), not ours
        installed = (partition / ".installed.cfg").read_text()
        assert f"slapos-slap = {software}/eggs/v5/slapos.core-1.26.1-" in installed

    # `slapos request` prints the connection parameters
    shown = cn.slapos(
        "request", "root", url, "--parameters", *(f"{k}={v}" for k, v in ports.items()),
        "name=cookbook", cfg=cn.client_config(),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    for value in published.values():
        assert value in shown.stdout, shown.stdout

    # a second run changes nothing: same processes, .installed.cfg untouched
    pids = {p: http_server_pids(p) for p in ports.values()}
    assert all(len(found) == 1 for found in pids.values()), pids
    installed_cfg = cn.node.partition(root_id) / ".installed.cfg"
    before = (installed_cfg.read_bytes(), installed_cfg.stat().st_mtime_ns)
    again = cn.slapos("node", "instance", "--now")
    assert again.returncode == 0, node_summary(again)
    assert {p: http_server_pids(p) for p in ports.values()} == pids
    assert (installed_cfg.read_bytes(), installed_cfg.stat().st_mtime_ns) == before

    # stop, then start again
    cn.request(url, "root", state="stopped")
    stopped = cn.slapos("node", "instance", "--now")
    assert stopped.returncode == 0, node_summary(stopped)
    wait_for(lambda: fetch(published["url"]) is None, 10, "the root's service to stop")
    assert fetch(published["child-url"]) is not None
    cn.request(url, "root", state="started")
    started = cn.slapos("node", "instance", "--now")
    assert started.returncode == 0, node_summary(started)
    wait_for(lambda: fetch(published["url"]), 10, "the root's service to answer again")

    # destroy: the node stops the services, `node report` empties the partitions
    cn.request(url, "root", state="destroyed")
    destroyed = cn.slapos("node", "instance", "--now")
    assert destroyed.returncode == 0, node_summary(destroyed)
    reported = cn.slapos("node", "report")
    assert reported.returncode == 0, node_summary(reported)
    assert fetch(published["url"]) is None
    assert os.listdir(cn.node.partition(root_id)) == []


@pytest.mark.upstream
@built_together("upstream", "cookbook")
def test_cookbook_release_built_by_upstreams_node(request: pytest.FixtureRequest,
                                                  corpus: Corpus, corpus_node) -> None:  # fmt: skip
    """Upstream 1.26.1's node builds the release too (against our proxy), with slapos.core
    from its own interpreter; like every release whose instance profile runs offline with
    zc.buildout 5+, it cannot deploy it."""
    master = master_for(request, "ours")
    cn: CorpusNode = corpus_node(master, "upstream", partitions=3)
    url = corpus.url("cookbook")
    cn.node.slap().registerSupply().supply(url, master.computer_id)
    built = cn.slapos("node", "software", "--now", timeout=1200)
    assert built.returncode == 0, node_summary(built)
    software = cn.node.software_root / _hash(url)
    assert (software / "instance.cfg").exists(), node_summary(built)
    instance = (software / "instance.cfg").read_text()
    assert "recipe = slapos.cookbook:wrapper" in instance
    assert Path(software / "bin" / "buildout").exists()
    eggs = {p.name.split("-")[0] for p in (software / "eggs").glob("*/*.egg")}
    assert "slapos.cookbook" in eggs and "slapos.core" not in eggs, eggs  # its own slapos.core
    cn.request(url, "root", {"port": str(free_port())})
    done = cn.slapos("node", "instance", "--now")
    # stock zc.buildout, offline, does not see the eggs it installed (ours runs it so that
    # it does: slapos/grid/offline_eggs.py)
    missing = "We don't have a distribution for slapos.recipe.build"
    assert missing in done.stderr, node_summary(done)
