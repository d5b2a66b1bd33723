"""The web panel's server side, called in-process: pages and files, the cross-site guard,
/public/, /http_proxy/, release schemas and the JSON-RPC methods the panel reads."""

from __future__ import annotations

import http.server
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slapos.proxy.app import ProxyApp, create_app
from slapos.proxy.config import ProxyConfig, TLSConfig
from slapos.proxy.panel import TOKEN_HEADER, panel_url
from slapos.proxy.release_files import MAX_BYTES, allowed, bundle
from slapos.proxy.wsgi import PEER_KEY

ORIGIN = "http://127.0.0.1"


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    app: ProxyApp,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    environ: dict[str, Any] | None = None,
) -> Answer:
    path, _, query = path.partition("?")
    env: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1", **(environ or {}),
    }  # fmt: skip
    for key, value in (headers or {}).items():
        env["HTTP_" + key.upper().replace("-", "_")] = value
    started: list[Any] = []
    chunks = app(env, lambda status, hdrs: started.append((status, hdrs)))
    return Answer(started[0][0], started[0][1], b"".join(chunks))


def rpc(app: ProxyApp, method: str, headers: dict[str, str] | None = None, **body: Any) -> Answer:
    return call(app, "POST", f"/{method}", json.dumps(body).encode(), headers)


def make_app(tmp_path: Path, **config: Any) -> ProxyApp:
    return create_app(
        ProxyConfig(
            path=None, database_uri=str(tmp_path / "proxy.db"), computer_id="COMP", **config
        )
    )


@pytest.fixture
def app(tmp_path: Path) -> ProxyApp:
    return make_app(tmp_path)


def populate(app: ProxyApp, release: str, partitions: int = 3) -> None:
    fmt: dict[str, Any] = {
        "computer_guid": "COMP",
        "compute_partition_list": [
            {"partition_id": f"slappart{i}",
             "ip_list": [{"ip-address": f"10.0.0.{i}", "network-interface": f"tap{i}"}]}
            for i in range(partitions)
        ],
    }  # fmt: skip
    assert rpc(app, "slapos.put.v0.compute_node_format", **fmt).status == 200
    assert rpc(app, "slapos.post.v0.software_installation", computer_guid="COMP",
               software_release_uri=release).status == 200  # fmt: skip
    for title, shared in (("Site", False), ("Front", True)):
        answer = rpc(app, "slapos.post.v0.software_instance", title=title, shared=shared,
                     software_release_uri=release, software_type="default",
                     parameters={"_": json.dumps({"n": 1})})  # fmt: skip
        assert answer.status == 200, answer.text
    connection = {"_": json.dumps({"url": "https://site.test/", "nested": {"db": "10.9.9.9"}})}
    method = "slapos.put.v0.software_instance_connection_parameter"
    for guid, parameters in (
        ("Site______0", connection),
        ("Front______1", {"site": "https://front.test/"}),
    ):
        answer = rpc(app, method, instance_guid=guid, connection_parameter_dict=parameters)
        assert answer.status == 200, answer.text


# ---- pages and files ----------------------------------------------------------------------


def test_root_redirects_to_the_panel_which_carries_its_token(app: ProxyApp) -> None:
    assert call(app, "GET", "/").headers["Location"] == f"{ORIGIN}/panel/"
    assert call(app, "GET", "/panel").status == 308
    page = call(app, "GET", "/panel/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "{{token}}" not in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert call(app, "POST", "/panel/").status == 405


@pytest.mark.parametrize(
    ("server", "panel"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/panel/"),
        ("https://0.0.0.0:8443", "https://127.0.0.1:8443/panel/"),
        ("http://[::]:80", "http://[::1]:80/panel/"),
        ("http://[fd46::1]:5000", "http://[fd46::1]:5000/panel/"),
    ],
)
def test_the_logged_panel_address_is_one_a_browser_opens(server: str, panel: str) -> None:
    assert panel_url(server) == panel


def test_static_files_are_cached_by_etag(app: ProxyApp) -> None:
    script = call(app, "GET", "/panel/panel.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    again = call(app, "GET", "/panel/panel.js", headers={"If-None-Match": script.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    for missing in ("/panel/nope.js", "/panel/../app.py", "/panel/.hidden.js", "/panel/x/y.css"):
        assert call(app, "GET", missing).status == 404, missing


def test_the_token_survives_a_restart(tmp_path: Path) -> None:
    def token(app: ProxyApp) -> str:
        page = call(app, "GET", "/panel/").text
        return page.split('name="slapos-panel-token" content="')[1].split('"')[0]

    first = token(make_app(tmp_path))
    assert len(first) == 48 and token(make_app(tmp_path)) == first


def test_a_partition_certificate_may_not_use_the_panel(tmp_path: Path) -> None:
    tls = TLSConfig(certificate=tmp_path / "c", key=tmp_path / "k", ca=tmp_path / "ca")
    app = make_app(tmp_path, tls=tls)
    partition = call(app, "GET", "/panel/", environ={PEER_KEY: "COMP/slappart0"})
    assert partition.status == 403 and "may not call /panel/" in partition.text
    assert call(app, "GET", "/panel/", environ={PEER_KEY: "user:admin"}).status == 200
    assert call(app, "GET", "/panel/", environ={PEER_KEY: "admin"}).status == 403  # no identity
    node = call(app, "GET", "/panel/panel.js", environ={PEER_KEY: "computer:COMP"})
    assert node.status == 403 and "may not call /panel/panel.js" in node.text


# ---- cross-site guard -----------------------------------------------------------------------


def test_browsers_need_the_same_origin_and_the_token(app: ProxyApp) -> None:
    token = call(app, "GET", "/panel/").text.split('panel-token" content="')[1].split('"')[0]
    method = "slapos.allDocs.WIP.instance_tree_list"
    assert rpc(app, method).status == 200  # not a browser: the slap library, nodes
    refused = [
        {"Origin": "https://evil.test", TOKEN_HEADER: token},
        {"Sec-Fetch-Site": "cross-site", TOKEN_HEADER: token},
        {"Sec-Fetch-Site": "same-site", "Origin": ORIGIN, TOKEN_HEADER: token},
        {"Origin": ORIGIN},
        {"Origin": ORIGIN, TOKEN_HEADER: "0" * 48},
        {"Sec-Fetch-Site": "same-origin"},
    ]
    for headers in refused:
        answer = rpc(app, method, headers)
        assert answer.status == 403, headers
    accepted = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", TOKEN_HEADER: token}
    assert rpc(app, method, accepted).status == 200
    # behind a reverse proxy that rewrites Host, its X-Forwarded-Host/-Proto name the origin
    behind = {"Origin": "https://panel.test", "X-Forwarded-Host": "panel.test",
              "X-Forwarded-Proto": "https", TOKEN_HEADER: token}  # fmt: skip
    assert rpc(app, method, behind).status == 200
    # a legacy SLAP call from a browser on another site is refused as well
    legacy = call(app, "POST", "/supplySupply", b"url=x&computer_id=COMP",
                  {"Origin": "https://evil.test"})  # fmt: skip
    assert legacy.status == 403 and "cross-site" in legacy.text


def test_names_that_could_be_an_attackers_are_refused(tmp_path: Path) -> None:
    """DNS rebinding: evil.test made to point at the proxy would be same-origin."""
    app = make_app(tmp_path, panel_host_list=("panel.example",))
    token = call(app, "GET", "/panel/").text.split('panel-token" content="')[1].split('"')[0]
    method = "slapos.allDocs.WIP.instance_tree_list"
    for host, status in (
        ("evil.test:8080", 403), ("127.0.0.1:8080", 200), ("[::1]:8080", 200),
        ("localhost:8080", 200), ("app.localhost", 200), ("panel.example", 200),
        ("PANEL.example.:443", 200), (socket.gethostname(), 200),
    ):  # fmt: skip
        page = call(app, "GET", "/panel/", headers={"Host": host})
        assert page.status == status, host
        origin = f"http://{host}"
        headers = {"Host": host, "Origin": origin, TOKEN_HEADER: token}
        assert rpc(app, method, headers).status == status, host
    refused = call(app, "GET", "/panel/", headers={"Host": "evil.test"})
    assert "add it to panel_host_list" in refused.text and token not in refused.text
    assert call(app, "GET", "/panel/panel.js", headers={"Host": "evil.test"}).status == 200
    assert rpc(app, method, {"Host": "evil.test"}).status == 200  # not a browser: a node


def test_panel_host_list_is_read_from_the_configuration(tmp_path: Path) -> None:
    from slapos.proxy.config import load_proxy_config

    cfg = tmp_path / "slapos-proxy.cfg"
    cfg.write_text(
        "[slapproxy]\nport = 8080\ncomputer_id = COMP\ndatabase_uri = x.db\n"
        "panel_host_list =\n  panel.example\n  other.example, third.example\n"
    )
    config = load_proxy_config(cfg)
    assert config.panel_host_list == ("panel.example", "other.example", "third.example")


# ---- /public/ -------------------------------------------------------------------------------


def test_public_files(tmp_path: Path) -> None:
    assert call(make_app(tmp_path), "GET", "/public/a.txt").status == 403
    public = tmp_path / "public"
    (public / "sub").mkdir(parents=True)
    (public / "sub" / "a.txt").write_text("hello")
    (tmp_path / "secret").write_text("no")
    app = make_app(tmp_path, public_directory_path=str(public))
    for path in ("/public/sub/a.txt", "/panel/public/sub/a.txt"):  # ours, upstream's
        answer = call(app, "GET", path)
        assert answer.status == 200 and answer.body == b"hello"
        assert answer.headers["Content-Disposition"] == 'attachment; filename="a.txt"'
        assert answer.headers["Content-Length"] == "5"
    head = call(app, "HEAD", "/public/sub/a.txt")
    assert head.status == 200 and head.body == b"" and head.headers["Content-Length"] == "5"
    for path in ("/public/../secret", "/public/%2e%2e/secret", "/public/sub", "/public/none"):
        assert call(app, "GET", path).status == 404, path


# ---- /http_proxy/ and schemas ---------------------------------------------------------------


class Files(http.server.BaseHTTPRequestHandler):
    root: Path

    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/sr/in.json?v=1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/endless":
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                return
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def release_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "served"
    (root / "sr").mkdir(parents=True)
    write_release(root / "sr")
    handler = type("Handler", (Files,), {"root": root})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_release(directory: Path) -> str:
    (directory / "software.cfg").write_text("[buildout]\n")
    (directory / "software.cfg.json").write_text(json.dumps({
        "name": "Demo", "serialisation": "json-in-xml",
        "software-type": {
            "default": {"title": "Default", "request": "in.json", "index": 1},
            "front": {"title": "Front", "software-type": "default", "shared": True,
                      "request": "missing.json", "serialisation": "xml", "index": 2},
        },
    }))  # fmt: skip
    (directory / "in.json").write_text(json.dumps({
        "type": "object",
        "properties": {"size": {"$ref": "common.json#/definitions/size"},
                       "self": {"$ref": "#/definitions/local"}},
        "definitions": {"local": {"type": "boolean"}},
    }))  # fmt: skip
    (directory / "common.json").write_text(
        json.dumps({"definitions": {"size": {"type": "integer", "default": 3}}})
    )
    return str(directory / "software.cfg")


def test_http_proxy_reads_files_of_known_releases_only(app: ProxyApp, release_server: str) -> None:
    host = release_server.split("://")[1]
    populate(app, f"{release_server}/sr/software.cfg")
    answer = call(app, "GET", f"/http_proxy/http/{host}/sr/software.cfg.json")
    assert answer.status == 200 and answer.json()["name"] == "Demo"
    assert answer.headers["Content-Disposition"] == "attachment"
    assert call(app, "GET", f"/http_proxy/http/{host}/sr/none.json").status == 404
    assert call(app, "HEAD", f"/http_proxy/http/{host}/sr/in.json").body == b""
    moved = call(app, "GET", f"/http_proxy/http/{host}/moved")
    assert moved.status == 302
    assert moved.headers["Location"] == f"{ORIGIN}/http_proxy/http/{host}/sr/in.json?v=1"
    too_big = call(app, "GET", f"/http_proxy/http/{host}/endless")
    assert too_big.status == 502 and str(MAX_BYTES) in too_big.text
    other = call(app, "GET", "/http_proxy/http/127.0.0.2:1/sr/software.cfg.json")
    assert other.status == 403 and "not a file of a software release" in other.text
    assert call(app, "GET", "/http_proxy/ftp/x/y").status == 400
    assert call(app, "POST", f"/http_proxy/http/{host}/sr/in.json").status == 405


def test_release_schema_over_http_and_on_disk(
    app: ProxyApp, release_server: str, tmp_path: Path
) -> None:
    (tmp_path / "local").mkdir()
    local = write_release(tmp_path / "local")
    populate(app, f"{release_server}/sr/software.cfg")
    supplied = rpc(app, "slapos.post.v0.software_installation", computer_guid="COMP",
                   software_release_uri=local)  # fmt: skip
    assert supplied.status == 200
    for release in (f"{release_server}/sr/software.cfg", local):
        schema = rpc(app, "slapos.get.WIP.software_release_schema", software_release_uri=release)
        document = schema.json()
        assert document["name"] == "Demo" and document["serialisation"] == "json-in-xml"
        default, front = document["software_type_list"]
        assert (default["key"], default["serialisation"], default["shared"]) == (
            "default", "json-in-xml", False,
        )  # fmt: skip
        properties = default["request_schema"]["properties"]
        assert properties["size"] == {"type": "integer", "default": 3}
        assert properties["self"] == {"type": "boolean"}
        assert (front["software_type"], front["shared"], front["serialisation"]) == (
            "default", True, "xml",
        )  # fmt: skip
        assert front["request_schema"] is None
        assert any("missing.json" in p for p in document["problem_list"])


def test_release_schema_of_a_typed_http_release(app: ProxyApp, release_server: str) -> None:
    typed = f"{release_server}/sr/software.cfg"  # not supplied, not used: typed in the form
    answer = rpc(app, "slapos.get.WIP.software_release_schema", software_release_uri=typed)
    assert [t["key"] for t in answer.json()["software_type_list"]] == ["default", "front"]
    host = release_server.split("://")[1]
    assert call(app, "GET", f"/http_proxy/http/{host}/sr/in.json").status == 403


def test_release_schema_of_an_unknown_or_schemaless_release(app: ProxyApp, tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    local = write_release(tmp_path / "local")
    unknown = rpc(app, "slapos.get.WIP.software_release_schema", software_release_uri=local)
    assert unknown.status == 200 and unknown.json()["software_type_list"] == []
    assert "not a file of a software release known" in unknown.json()["problem_list"][0]
    plain = tmp_path / "plain" / "software.cfg"
    plain.parent.mkdir()
    plain.write_text("[buildout]\n")
    populate(app, str(plain))
    answer = rpc(app, "slapos.get.WIP.software_release_schema", software_release_uri=str(plain))
    assert answer.json()["software_type_list"] == [] and answer.json()["serialisation"] is None


def test_files_of_a_release_on_disk() -> None:
    releases = {"/srv/sr/web/software.cfg", "/top.cfg", "/one/software.cfg", "http://h/x.cfg"}
    assert allowed("/srv/sr/web/x.json", releases)
    assert allowed("/srv/sr/stack/x.json", releases)  # `../stack/`, as releases refer
    assert allowed("file:///srv/sr/web/x.json", releases)
    assert not allowed("/srv/other/x.json", releases)
    assert allowed("/one/x.json", releases) and not allowed("/etc/x.json", releases)
    assert not allowed("/top.json", releases)  # a release in / opens nothing
    assert allowed("http://h/y.json", releases) and not allowed("http://g/y.json", releases)
    assert not allowed("ftp://h/y.json", releases)


def test_bundle_stops_on_a_schema_that_refers_to_itself() -> None:
    documents = {"file:///a.json": {"loop": {"$ref": "#/loop"}}}
    result = bundle({"$ref": "a.json#/loop"}, "file:/b.json", documents.__getitem__)
    text = json.dumps(result)
    assert "nested too deep" in text
    dangling = bundle({"$ref": "none.json"}, "file:/b.json", documents.__getitem__)
    assert "cannot read none.json" in dangling["description"]


# ---- JSON-RPC methods of the panel ---------------------------------------------------------


def test_tree_list_instances_node_and_search(app: ProxyApp) -> None:
    release = "https://example.test/sr/software.cfg"
    populate(app, release)
    trees = rpc(app, "slapos.allDocs.WIP.instance_tree_list").json()["result_list"]
    assert [(t["title"], t["shared"], t["state"], t["status"]) for t in trees] == [
        ("Site", False, "started", None), ("Front", True, "started", None),
    ]  # fmt: skip
    site = rpc(app, "slapos.allDocs.WIP.instance_tree_instance_list", title="Site").json()
    (root,) = site["result_list"]
    assert root["compute_partition_id"] == "slappart0" and root["ip_list"] == [["tap0", "10.0.0.0"]]
    (hosted,) = root["hosted_shared_list"]
    assert hosted["title"] == "Front"
    assert hosted["connection_parameters"] == {"site": "https://front.test/"}
    front = rpc(app, "slapos.allDocs.WIP.instance_tree_instance_list", title="Front").json()
    assert [i["shared"] for i in front["result_list"]] == [True]
    missing = rpc(app, "slapos.allDocs.WIP.instance_tree_instance_list", title="Nope")
    assert missing.status == 403 and "No instance tree Nope" in missing.json()["title"]

    node = rpc(app, "slapos.get.WIP.compute_node", computer_guid="COMP").json()
    assert [p["slap_state"] for p in node["partition_list"]] == ["busy", "free", "free"]
    assert node["partition_list"][0]["shared_count"] == 1
    assert node["software_installation_list"] == [
        {"software_release_uri": release, "state": "available", "status": None}
    ]
    assert rpc(app, "slapos.get.WIP.compute_node", computer_guid="NOPE").status == 403

    def search(value: str) -> list[tuple[str, str]]:
        answer = rpc(app, "slapos.allDocs.WIP.connection_parameter_search", value=value).json()
        return [(r["instance_guid"], r["key"]) for r in answer["result_list"]]

    assert search("10.9.9") == [("Site______0", "nested.db")]  # inside the `_` JSON
    assert search("HTTPS://") == [("Site______0", "url"), ("Front______1", "site")]
    assert search("  ") == [] and search("absent") == []
    # the nodes' reports: the tree shows its failing instance, by name
    assert rpc(app, "slapos.put.v0.software_instance_error", instance_guid="Site______0",
               message="port in use").status == 200  # fmt: skip
    assert rpc(app, "slapos.put.v0.software_installation_reported_state", computer_guid="COMP",
               software_release_uri=release, reported_state="available").status == 200  # fmt: skip
    (site,) = [t for t in rpc(app, "slapos.allDocs.WIP.instance_tree_list").json()["result_list"]
               if t["title"] == "Site"]  # fmt: skip
    assert (site["status"]["state"], site["status"]["message"]) == ("error", "port in use")
    assert site["status"]["instance"] == "Site" and site["status"]["time"].endswith("Z")
    node = rpc(app, "slapos.get.WIP.compute_node", computer_guid="COMP").json()
    assert node["partition_list"][0]["status"]["error"] == "port in use"
    assert node["software_installation_list"][0]["status"]["state"] == "available"
    releases = rpc(app, "slapos.allDocs.WIP.software_release_list").json()["result_list"]
    assert releases == [
        {"software_release_uri": release,
         "computer_list": [{"computer_guid": "COMP", "state": "available"}]}
    ]  # fmt: skip
