"""The release corpus deployed end to end: our node against our proxy and against upstream
1.26.1's proxy; upstream's node against our proxy.

Each release of tests/data/corpus/ is built by `node software` from published recipes that
buildout downloads from the package index (versions pinned in the release), then requested
with parameters and deployed until its parent instance republishes its child's URL; then
the service answers, `slapos request` shows the parameters, a second run changes nothing,
stop/start work, and destroy + `node report` empty the partitions.

Upstream's node builds the same software but cannot deploy a release written the ordinary
way with zc.buildout 5+ (docs/node-software.rst, "Instance buildouts run offline"):
test_template_release_upstream_node checks both facts; it deploys "template-portable",
which works around zc.buildout, end to end against our proxy.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import fetch, free_port, not_answering, wait_for
from tests.fixtures.corpus import Corpus, CorpusNode, built_together, node_summary
from tests.fixtures.grid import materialise_sr

#: (node flavour, master flavour); upstream's node: test_template_release_upstream_node
WAYS = [("ours", "ours"), ("ours", "upstream")]
WAY_IDS = ["our-node-our-proxy", "our-node-upstream-proxy"]
#: (node flavour, master flavour, release) of test_template_release: upstream's node can
#: only deploy the variant that works around zc.buildout 5+ offline
TEMPLATE_WAYS = [
    pytest.param(node, master, release, marks=built_together(node, release))
    for node, master, release in [("ours", "ours", "template"), ("ours", "upstream", "template"),
                                  ("upstream", "ours", "template-portable")]
]  # fmt: skip
TEMPLATE_WAY_IDS = [*WAY_IDS, "upstream-node-our-proxy"]


def http_server_pids(port: str) -> list[int]:
    """Processes running `python -m http.server ... PORT` (the corpus' service)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "http.server" in cmdline and cmdline[-1:] == [port]:
            found.append(proc.pid)
    return sorted(found)


def partition_layout(path: Path) -> set[str]:
    """Relative paths in a partition, node bookkeeping (.slapgrid, .timestamp...) aside."""
    found = set()
    for root, dirs, files in os.walk(path):
        rel = os.path.relpath(root, path)
        dirs[:] = [d for d in dirs if d not in ("__pycache__", ".slapgrid")]
        for name in [*files, *dirs]:
            if rel == "." and name.startswith(".") and name != ".installed.cfg":
                continue
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def master_for(request: pytest.FixtureRequest, flavour: str) -> Any:
    return request.getfixturevalue("proxy" if flavour == "ours" else "upstream_proxy")


def deploy(cn: CorpusNode, url: str, name: str, key: str, runs: int = 6) -> dict[str, str]:
    """`node instance` until instance `name` publishes `key`; returns its parameters."""
    outputs = []
    for _ in range(runs):
        done = cn.slapos("node", "instance", "--now")
        outputs.append(node_summary(done))
        published = cn.connection(url, name)
        if published.get(key):
            return published
    logs = [
        f"{log}:\n{log.read_text()[-3000:]}"
        for log in sorted(cn.node.instance_root.glob("*/.slapgrid/log/instance.log"))
    ]
    raise AssertionError(
        f"{name} never published {key!r}:\n" + "\n----\n".join(outputs[-2:] + logs)
    )


@pytest.fixture(params=WAYS, ids=WAY_IDS)
def way(request: pytest.FixtureRequest) -> tuple[str, str]:
    node_flavour, master_flavour = request.param
    return node_flavour, master_flavour


#: What the "template" release leaves in a partition, whichever node deployed it.
TEMPLATE_LAYOUT = {
    ".installed.cfg",
    "buildout.cfg",
    "software_release",
    "etc",
    "parts",
    "sbin",
    "etc/service",
    "etc/service/http-server",
    "srv",
    "srv/www",
    "srv/www/index.html",
}


@pytest.mark.upstream
@pytest.mark.parametrize(("node_flavour", "master_flavour", "release"), TEMPLATE_WAYS,
                         ids=TEMPLATE_WAY_IDS)  # fmt: skip
def test_template_release(
    request: pytest.FixtureRequest,
    node_flavour: str,
    master_flavour: str,
    release: str,
    corpus: Corpus,
    corpus_node,
) -> None:
    master = master_for(request, master_flavour)
    cn: CorpusNode = corpus_node(master, node_flavour, partitions=3)
    url = corpus.url(release)

    cn.node.slap().registerSupply().supply(url, master.computer_id)
    built = cn.slapos("node", "software", "--now")
    assert built.returncode == 0, node_summary(built)
    software = cn.node.software_root / _hash(url)
    assert software_layout(software) == TEMPLATE_SOFTWARE_LAYOUT, node_summary(built)

    port, child_port = str(free_port()), str(free_port())
    parent = cn.request(url, "parent", {"port": port, "child-port": child_port, "name": "corpus"})
    parent_id = parent.getId()
    published = deploy(cn, url, "parent", "child-url")
    assert published["url"] == f"http://127.0.0.1:{port}/"
    assert published["child-url"] == f"http://127.0.0.1:{child_port}/"
    wait_for(lambda: fetch(published["url"]), 20, "the parent's service to answer")
    assert fetch(published["url"]) == f"hello corpus from {parent_id} (default)"
    answer = wait_for(lambda: fetch(published["child-url"]), 20, "the child's service")
    assert isinstance(answer, str)
    assert answer.startswith("hello child from slappart") and answer.endswith("(child)")
    child_id = answer.split()[3]
    assert child_id != parent_id

    shown = cn.slapos(
        "request",
        "parent",
        url,
        "--parameters",
        f"port={port}",
        f"child-port={child_port}",
        "name=corpus",
        cfg=cn.client_config(),
    )
    assert shown.returncode == 0, shown.stderr
    # ours prints them on stdout; upstream's logs them (stderr)
    printed = shown.stdout if node_flavour == "ours" else shown.stdout + shown.stderr
    assert published["url"] in printed and published["child-url"] in printed, printed

    for partition_id in (parent_id, child_id):
        assert partition_layout(cn.node.partition(partition_id)) == TEMPLATE_LAYOUT

    check_lifecycle(cn, url, "parent", parent_id, {port: published["url"], child_port: None})

    # the child goes with its parent: the master marks it destroyed, the next runs empty it
    child = cn.node.partition(child_id)
    for _ in range(3):
        if not os.listdir(child):
            break
        assert cn.slapos("node", "instance", "--now").returncode == 0
        assert cn.slapos("node", "report").returncode == 0
    assert os.listdir(child) == []
    assert fetch(published["child-url"]) is None
    assert http_server_pids(child_port) == []


#: What `node software` leaves in the release's directory, whichever node built it.
TEMPLATE_SOFTWARE_LAYOUT = {
    ".cache",  # pip's, HOME being the software directory while it builds
    ".completed",
    ".installed.cfg",
    "bin",
    "buildout.cfg",
    "develop-eggs",
    "eggs",
    "extends-cache",
    "instance.cfg",
    "parts",
}


def software_layout(path: Path) -> set[str]:
    return {name for name in os.listdir(path) if name not in (".slapgrid", ".timestamp")}


@pytest.mark.upstream
@built_together("upstream", "template")
def test_template_release_upstream_node(
    request: pytest.FixtureRequest, corpus: Corpus, corpus_node
) -> None:
    """Upstream 1.26.1's node against our proxy: it builds the release as ours does, but
    cannot deploy it: with zc.buildout 5+ it runs the instance profile as written, and
    zc.buildout appends v5 to the software's (already versioned) eggs directory."""
    master = master_for(request, "ours")
    cn: CorpusNode = corpus_node(master, "upstream", partitions=3)
    url = corpus.url("template")
    cn.node.slap().registerSupply().supply(url, master.computer_id)
    built = cn.slapos("node", "software", "--now")
    assert built.returncode == 0, node_summary(built)
    software = cn.node.software_root / _hash(url)
    assert software_layout(software) == TEMPLATE_SOFTWARE_LAYOUT, node_summary(built)

    cn.request(url, "parent", {"port": str(free_port()), "child-port": str(free_port())})
    done = cn.slapos("node", "instance", "--now")
    output = done.stdout + done.stderr
    assert done.returncode != 0, node_summary(done)
    assert f"Permission denied: '{software}/eggs/v5/v5'" in output, node_summary(done)


#: What the "promise" release leaves in a partition (the node's .slapgrid/ aside).
PROMISE_LAYOUT = {
    ".installed.cfg",
    "buildout.cfg",
    "software_release",
    "etc",
    "etc/plugin",
    "etc/plugin/__init__.py",  # the node's, as upstream: plugins are imported from there
    "etc/plugin/check-socket-listening.py",
    "etc/service",
    "etc/service/http-server",
    "parts",
    "sbin",
    "srv",
    "srv/www",
}


def promise_status(cn: CorpusNode, partition_id: str, title: str) -> dict[str, Any]:
    import json

    path = cn.node.partition(partition_id) / ".slapgrid" / "promise" / "result"
    return dict(json.loads((path / f"{title}.status.json").read_text()))


@pytest.mark.upstream
@built_together("ours", "promise")  # both ways: our node
def test_promise_release(
    request: pytest.FixtureRequest,
    way: tuple[str, str],
    corpus: Corpus,
    corpus_node,
    closed_port: int,
) -> None:
    """slapos.toolbox's check_socket_listening in etc/plugin: failing, then passing."""
    node_flavour, master_flavour = way
    master = master_for(request, master_flavour)
    cn: CorpusNode = corpus_node(master, node_flavour, partitions=1)
    url = corpus.url("promise")
    cn.node.slap().registerSupply().supply(url, master.computer_id)
    built = cn.slapos("node", "software", "--now", timeout=900)
    assert built.returncode == 0, node_summary(built)

    # watching a port nobody listens on: the promise fails, the run says which and why
    port, nothing = str(free_port()), str(closed_port)
    partition_id = cn.request(url, "watched", {"port": port, "check-port": nothing}).getId()
    failing = cn.slapos("node", "instance", "--now")
    assert failing.returncode == 2, node_summary(failing)
    assert "check-socket-listening" in failing.stderr, node_summary(failing)
    status = promise_status(cn, partition_id, "check-socket-listening")
    assert status["result"]["failed"] is True, status
    assert "Connection refused" in status["result"]["message"], status

    # watching the service's own port: the promise passes
    cn.request(url, "watched", {"port": port})
    passing = cn.slapos("node", "instance", "--now")
    assert passing.returncode == 0, node_summary(passing)
    status = promise_status(cn, partition_id, "check-socket-listening")
    assert status["result"]["failed"] is False, status
    published = cn.connection(url, "watched")
    assert published == {"url": f"http://127.0.0.1:{port}/"}
    assert partition_layout(cn.node.partition(partition_id)) == PROMISE_LAYOUT
    wait_for(lambda: fetch(published["url"]), 20, "the service to answer")
    shown = cn.slapos(
        "request", "watched", url, "--parameters", f"port={port}", cfg=cn.client_config()
    )
    assert shown.returncode == 0, shown.stderr
    assert published["url"] in shown.stdout
    check_lifecycle(cn, url, "watched", partition_id, {port: published["url"]})


def check_lifecycle(
    cn: CorpusNode, url: str, name: str, partition_id: str, services: dict[str, str | None]
) -> None:
    """A second run changes nothing; stop/start; destroy and `node report` empty the partition.

    `services`: port -> URL of each service to watch; the instance `name` runs the one
    with a URL, the others (its children's) must survive its stop.
    """
    pids = {p: http_server_pids(p) for p in services}
    assert all(len(found) == 1 for found in pids.values()), pids
    installed = cn.node.partition(partition_id) / ".installed.cfg"
    before = (installed.read_bytes(), installed.stat().st_mtime_ns)
    again = cn.slapos("node", "instance", "--now")
    assert again.returncode == 0, node_summary(again)
    assert {p: http_server_pids(p) for p in services} == pids
    assert (installed.read_bytes(), installed.stat().st_mtime_ns) == before

    own = [u for u in services.values() if u]
    others = [p for p, u in services.items() if not u]
    cn.request(url, name, state="stopped")
    stopped = cn.slapos("node", "instance", "--now")
    assert stopped.returncode == 0, node_summary(stopped)
    for service in own:
        wait_for(partial(not_answering, service), 10, f"{service} to stop")
    for p in others:
        assert len(http_server_pids(p)) == 1, f"the service on port {p} stopped too"
    cn.request(url, name, state="started")
    started = cn.slapos("node", "instance", "--now")
    assert started.returncode == 0, node_summary(started)
    for service in own:
        wait_for(partial(fetch, service), 10, f"{service} to answer again")

    cn.request(url, name, state="destroyed")
    destroyed = cn.slapos("node", "instance", "--now")
    assert destroyed.returncode == 0, node_summary(destroyed)
    reported = cn.slapos("node", "report")
    assert reported.returncode == 0, node_summary(reported)
    for service in own:
        assert fetch(service) is None
    assert os.listdir(cn.node.partition(partition_id)) == []


def _hash(url: str) -> str:
    from slapos.grid.utils import software_hash

    return software_hash(url)


def test_release_whose_recipe_cannot_be_imported(proxy, corpus: Corpus, corpus_node) -> None:
    """One line names the recipe, the reason and the log; the other release is still built."""
    cn: CorpusNode = corpus_node(proxy, "ours", partitions=1, shared=False)
    # the other release: the small offline one of tests/data/sr (built in about a second)
    good = str(materialise_sr(cn.node.base / "sr").path("success"))
    bad = corpus.url("bad-recipe")
    for url in (bad, good):
        cn.node.slap().registerSupply().supply(url, proxy.computer_id)
    done = cn.slapos("node", "software", "--now")
    assert done.returncode == 1, node_summary(done)
    log = cn.node.software_root / ".slapgrid" / "log" / f"{_hash(bad)}.log"
    lines = [line for line in done.stderr.splitlines() if "jinja3" in line]
    assert lines, node_summary(done)
    first = lines[0]
    assert "ERROR" in first and bad in first, first
    assert "cannot load recipe slapos.recipe.template:jinja3" in first, first
    assert "ImportError: Entry point ('zc.buildout', 'jinja3') not found" in first, first
    assert str(log) in first, first
    assert "Traceback" not in done.stderr
    assert (cn.node.software_root / _hash(good) / ".completed").exists(), node_summary(done)
