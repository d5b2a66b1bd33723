"""A master for a fleet, across network namespaces (root): PostgreSQL in one namespace, two
proxy processes in two others behind a front (HAProxy, health-checked), three real nodes
(`node format`, `node software`, `node instance` on tests/data/sr-instance) in three more,
and a client in its own. The namespaces share one bridge (10.77.0.0/24); nothing leaves them.
Proxy p1 is served by gunicorn, p2 by granian (what docs/proxy.rst advises a fleet): the
two servers mix behind one front.

What it shows: requests placed with `--node computer_guid=...` land on that node; an
instance on node 1 requests a child that lands on node 2 and a shared instance served by
node 3; connection parameters flow back to the client through either proxy; when one proxy
(p1, every process of it) is SIGKILLed the nodes keep working through the front, served by
p2; when PostgreSQL restarts, everything recovers and no acknowledged write is lost.
Namespaces, users, processes and files are removed afterwards, even on failure.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import textwrap
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import REPO, wait_for
from tests.fixtures.grid_instance import build_software, materialise_sr_instance
from tests.fixtures.postgres import PostgresServer, start_postgres

pytestmark = [pytest.mark.root, pytest.mark.timeout(1200)]

NET = "10.77.0"
ADDRESSES = {"db": 2, "p1": 3, "p2": 4, "fr": 5, "n1": 11, "n2": 12, "n3": 13, "cl": 20}
PROXY_PORT, FRONT_PORT = 8080, 8000
FRONT = f"http://{NET}.{ADDRESSES['fr']}:{FRONT_PORT}"


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class Cluster:
    tag: str
    base: Path
    python: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    proxies: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    postgres: PostgresServer | None = None
    postgres_run: Generator[PostgresServer, None, None] | None = None

    def ns(self, role: str) -> str:
        return f"{self.tag}{role}"

    def run(
        self, role: str, *argv: str, timeout: float = 600, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLAPOS_", "PYTHON"))}
        env["PYTHONPATH"] = str(REPO)
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(role), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=check,
            stdin=subprocess.DEVNULL,
            cwd=self.base,
        )

    def slapos(
        self, role: str, *argv: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return self.run(role, str(self.python), "-m", "slapos", *argv, timeout=timeout)

    def start(self, role: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLAPOS_", "PYTHON"))}
        env["PYTHONPATH"] = str(REPO)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(role), *argv],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd=self.base,
            )  # fmt: skip
        self.processes.append(proc)
        return proc

    def answers(self, role: str, url: str) -> str | None:
        """GET `url` from inside namespace `role` (None when it does not answer)."""
        code = (
            "import sys, urllib.request\n"
            "try:\n"
            f"    print(urllib.request.urlopen({url!r}, timeout=3).read().decode(), end='')\n"
            "except OSError as e:\n"
            "    sys.exit(1)\n"
        )
        done = self.run(role, str(self.python), "-c", code, timeout=30)
        return done.stdout if done.returncode == 0 else None


def _network(cluster: Cluster) -> None:
    hub = cluster.ns("hub")
    sh("ip", "netns", "add", hub)
    sh("ip", "netns", "exec", hub, "ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "netns", "exec", hub, "ip", "link", "set", "br0", "up")
    for index, (role, host) in enumerate(ADDRESSES.items()):
        ns = cluster.ns(role)
        sh("ip", "netns", "add", ns)
        inner, outer = f"{cluster.tag}i{index}", f"{cluster.tag}o{index}"
        sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "link", "set", outer, "netns", hub)
        sh("ip", "netns", "exec", hub, "ip", "link", "set", outer, "master", "br0", "up")
        for cmd in (
            ["ip", "link", "set", inner, "name", "eth0"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "addr", "add", f"{NET}.{host}/24", "dev", "eth0"],
            ["ip", "-6", "addr", "add", f"fd77::{host}/64", "dev", "eth0", "nodad"],
        ):
            sh("ip", "netns", "exec", ns, *cmd)


@pytest.fixture
def cluster(node_python: Path) -> Iterator[Cluster]:
    tag = f"sc{os.getpid() % 10000}"
    base = Path(tempfile.mkdtemp(prefix="slcl", dir="/tmp"))
    base.chmod(0o755)
    made = Cluster(tag, base, node_python)
    try:
        _network(made)
        yield made
    finally:
        for proc in made.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for node in ("n1", "n2", "n3"):  # supervisord of each node, and what it runs
            pidfile = base / node / "inst" / "var" / "run" / "supervisord.pid"
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        if made.postgres_run is not None:
            made.postgres_run.close()  # stops the server, removes its directory
        for role in [*ADDRESSES, "hub"]:
            sh("ip", "netns", "del", made.ns(role), check=False)
        for entry in pwd.getpwall():
            if entry.pw_name.startswith(tag):
                sh("pkill", "-KILL", "-u", entry.pw_name, check=False)
                sh("userdel", entry.pw_name, check=False)
        for group in grp.getgrall():
            if group.gr_name.startswith(tag):
                sh("groupdel", group.gr_name, check=False)
        shutil.rmtree(base, ignore_errors=True)


def _start_proxy(cluster: Cluster, role: str, uri: str, server: str) -> None:
    directory = cluster.base / role
    directory.mkdir(exist_ok=True)
    config = directory / "slapos-proxy.cfg"
    config.write_text(
        f"[slapos]\ncomputer_id = n1\n\n[slapproxy]\nhost = {NET}.{ADDRESSES[role]}\n"
        f"port = {PROXY_PORT}\ndatabase_uri = {uri}\nhttp_server = {server}\n"
    )
    proc = cluster.start(
        role, [str(cluster.python), "-m", "slapos", "proxy", "start", "--cfg", str(config)],
        directory / "proxy.log",
    )  # fmt: skip
    cluster.proxies[role] = proc
    url = f"http://{NET}.{ADDRESSES[role]}:{PROXY_PORT}/"
    wait_for(lambda: cluster.answers(role, url) is not None, 60, f"proxy {role}")
    assert f"({server}, " in (directory / "proxy.log").read_text(), f"{role} is not {server}"


def _start_front(cluster: Cluster) -> None:
    """HAProxy: both proxies, health-checked every 200 ms, a failed request sent again to
    the other process, request bodies read before they are passed on (what docs/proxy.rst
    asks of a front)."""
    config = cluster.base / "haproxy.cfg"
    config.write_text(
        textwrap.dedent(
            f"""\
            global
                maxconn 256
            defaults
                mode http
                timeout connect 2s
                timeout client 120s
                timeout server 120s
                retries 3
                option redispatch
                option http-buffer-request
            frontend master
                bind {NET}.{ADDRESSES["fr"]}:{FRONT_PORT}
                default_backend proxies
            backend proxies
                balance roundrobin
                option httpchk GET /
                server p1 {NET}.{ADDRESSES["p1"]}:{PROXY_PORT} check inter 200 fall 1 rise 2
                server p2 {NET}.{ADDRESSES["p2"]}:{PROXY_PORT} check inter 200 fall 1 rise 2
            """
        )
    )
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    cluster.start("fr", [haproxy, "-db", "-f", str(config)], cluster.base / "haproxy.log")
    wait_for(lambda: cluster.answers("cl", FRONT + "/") is not None, 60, "the front")


def _node(cluster: Cluster, index: int) -> Path:
    """Node `n<index>`: its configuration, formatted for real (users, addresses)."""
    role = f"n{index}"
    base = cluster.base / role
    base.mkdir()
    base.chmod(0o755)
    config = base / "slapos.cfg"
    config.write_text(
        textwrap.dedent(
            f"""\
            [slapos]
            computer_id = {role}
            master_url = {FRONT}
            software_root = {base}/soft
            instance_root = {base}/inst
            software_min_free_space = 0
            instance_min_free_space = 0
            pidfile_software = {base}/sr.pid
            pidfile_instance = {base}/cp.pid
            pidfile_report = {base}/ur.pid
            pidfile_format = {base}/fm.pid
            promise_timeout = 20

            [slapformat]
            interface_name = eth0
            ipv4_local_network = 10.8{index}.0.0/16
            partition_amount = 2
            computer_xml = {base}/slapos.xml
            computer_json = {base}/slapos.json
            alter_user = true
            alter_network = true
            create_tap = false
            create_tun = false
            partition_has_ipv6_range = false
            user_base_name = {cluster.tag}u{index}x
            software_user = {cluster.tag}s{index}
            """
        )
    )
    done = cluster.slapos(role, "node", "format", "--cfg", str(config), "--now")
    assert done.returncode == 0, done.stderr[-3000:]
    return config


def _client(cluster: Cluster, master: str) -> Path:
    config = cluster.base / f"client-{abs(hash(master))}.cfg"
    config.write_text(f"[slapos]\nmaster_url = {master}\n")
    return config


#: title -> (node, instance parameters): a request always repeats its parameters (a request
#: with others would change the instance)
INSTANCES = {
    "host": ("n3", {"promise": "none"}),
    "root": ("n1", {"child": "kid", "child-node": "n2", "shared": "svc", "shared-node": "n3"}),
    "late": ("n2", {"promise": "none"}),
}


def _request(
    cluster: Cluster, master: str, sr: str, title: str
) -> subprocess.CompletedProcess[str]:
    """`slapos request` from the client's namespace: 0 (ready) or 2 (not ready yet)."""
    node, parameters = INSTANCES[title]
    argv = ["request", title, sr, "--node", f"computer_guid={node}", "--format", "json"]
    argv += ["--parameters", *(f"{k}={v}" for k, v in parameters.items())]
    return cluster.slapos("cl", *argv, "--cfg", str(_client(cluster, master)), timeout=120)


def _instance_runs(cluster: Cluster, configs: dict[str, Path], order: list[str]) -> None:
    for role in order:
        done = cluster.slapos(
            role, "node", "instance", "--cfg", str(configs[role]), "--now", timeout=300
        )
        assert done.returncode == 0, f"{role}: {done.stderr[-3000:]}"


def _published(cluster: Cluster, master: str, sr: str, title: str) -> dict[str, Any]:
    """The connection parameters the client is shown for `title` through `master`."""
    import json

    done = _request(cluster, master, sr, title)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout)["connection-parameters"])


def test_a_fleet_across_namespaces(cluster: Cluster) -> None:
    cluster.postgres_run = start_postgres(
        host=f"{NET}.{ADDRESSES['db']}", netns=cluster.ns("db"), allow=f"{NET}.0/24"
    )
    cluster.postgres = next(cluster.postgres_run)
    cluster.postgres.psql("CREATE DATABASE fleet")
    uri = cluster.postgres.uri("fleet")
    _start_proxy(cluster, "p1", uri, "gunicorn")
    _start_proxy(cluster, "p2", uri, "granian")
    _start_front(cluster)

    sr = str(materialise_sr_instance(cluster.base / "sr"))
    configs = {f"n{i}": _node(cluster, i) for i in (1, 2, 3)}
    for index, (role, config) in enumerate(configs.items(), 1):
        supplied = cluster.slapos("cl", "supply", sr, role, "--cfg", str(_client(cluster, FRONT)))
        assert supplied.returncode == 0, supplied.stderr
        # the build needs the package index (pip's build isolation for the recipe's
        # setup.py), which no namespace reaches: built from the host namespace, as the
        # node's software user; `node software` then finds it and reports it available
        build_software(cluster.base / role / "soft", sr, cluster.python, f"{cluster.tag}s{index}")
        for path in [cluster.base / "sr", *(cluster.base / "sr").rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)  # the next node's user builds too
        built = cluster.slapos(role, "node", "software", "--cfg", str(config), "--now")
        assert built.returncode == 0, f"{role}: {built.stderr[-3000:]}"

    # the host of the shared instance on node 3, then the root on node 1 (child on node 2)
    p1 = f"http://{NET}.{ADDRESSES['p1']}:{PROXY_PORT}"
    p2 = f"http://{NET}.{ADDRESSES['p2']}:{PROXY_PORT}"
    assert _request(cluster, FRONT, sr, "host").returncode in (0, 2)
    root = _request(cluster, p1, sr, "root")
    assert root.returncode in (0, 2), root.stderr
    _instance_runs(cluster, configs, ["n3", "n1", "n2", "n3", "n1"])

    # each instance runs on the node it was placed on
    for role, title in (("n1", "root"), ("n2", "kid"), ("n3", "host")):
        partitions = list((cluster.base / role / "inst").glob("*/etc/service/web"))
        assert len(partitions) == 1, f"{role} should run exactly {title}"
    published = _published(cluster, p2, sr, "root")
    assert set(published) >= {"url", "child-url", "shared-url"}, published
    assert published == _published(cluster, p1, sr, "root")
    assert published == _published(cluster, FRONT, sr, "root")
    assert published["child-url"].startswith("http://10.82."), "kid is not on node 2"
    assert published["shared-url"].startswith("http://10.83."), "svc is not served by node 3"
    assert published["url"].startswith("http://10.81.")
    kid = published["child-url"]
    assert (cluster.answers("n2", kid) or "").startswith("hello from slappart")

    # one proxy process dies: the nodes and the client keep working through the front
    os.killpg(cluster.proxies["p1"].pid, signal.SIGKILL)
    cluster.proxies["p1"].wait(timeout=30)
    again = _request(cluster, FRONT, sr, "late")
    assert again.returncode in (0, 2), again.stderr
    _instance_runs(cluster, configs, ["n1", "n2", "n3"])
    assert _published(cluster, FRONT, sr, "root") == published

    # PostgreSQL restarts: everything recovers, nothing acknowledged is lost
    cluster.postgres.restart()
    _instance_runs(cluster, configs, ["n1", "n2", "n3"])
    assert _published(cluster, FRONT, sr, "root") == published
    late = _published(cluster, p2, sr, "late")
    assert late.get("url", "").startswith("http://10.82."), late
