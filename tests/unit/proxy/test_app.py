"""The proxy WSGI application, called in-process: answers, errors, semantics."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from slapos.proxy.app import ProxyApp, create_app
from slapos.proxy.config import ProxyConfig
from slapos.slap.marshal import WireObject, dumps, loads

SR = "http://sr.example.invalid/software.cfg"


class Clock:
    """A slapos.system.Clock whose time of day moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        self.now += 1
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Client:
    def __init__(self, app: ProxyApp, peer: str | None = None) -> None:
        self.app = app
        #: the client certificate's common name, as the server layer passes it (TLS)
        self.peer = peer

    def call(
        self,
        method: str,
        path: str,
        form: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, str]:
        data = body if body is not None else urlencode(form or {}).encode()
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data),
            "QUERY_STRING": urlencode(form or {}) if method == "GET" else "",
            "CONTENT_LENGTH": str(len(data)) if method != "GET" else "0",
            "HTTP_HOST": "127.0.0.1",
        }  # fmt: skip
        for key, value in (headers or {}).items():
            environ["HTTP_" + key.upper().replace("-", "_")] = value
        if self.peer is not None:
            environ["slapos.peer_common_name"] = self.peer
        status: list[str] = []
        chunks = self.app(environ, lambda s, h: status.append(s))
        return int(status[0].split()[0]), b"".join(chunks).decode()

    def get(self, path: str, **form: Any) -> tuple[int, str]:
        return self.call("GET", path, form)

    def post(
        self, path: str, headers: dict[str, str] | None = None, **form: Any
    ) -> tuple[int, str]:
        return self.call("POST", path, form, headers)

    def request(
        self,
        title: str,
        *,
        state: str | None = None,
        shared: bool = False,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> tuple[int, Any]:
        status, body = self.post(
            "/requestComputerPartition", headers, software_release=SR, software_type="default",
            partition_reference=title, partition_parameter_xml=dumps(params or {}),
            filter_xml=dumps(extra.pop("filter_kw", {})), state=dumps(state),
            shared_xml=dumps(shared), **extra,
        )  # fmt: skip
        return status, loads(body) if status == 200 else body

    def partitions(self) -> dict[str, dict[str, Any]]:
        status, body = self.get("/getFullComputerInformation", computer_id="COMP")
        assert status == 200, body
        return {p.args[1]: p.state for p in loads(body).state["_computer_partition_list"]}


def _format(
    client: Client, addresses: list[str], reference: str = "COMP", address: str = "127.0.0.1"
) -> None:
    """Post computer `reference` with one partition (slappartN, tapN) per address."""
    computer = {
        "reference": reference, "address": address, "netmask": "255.0.0.0",
        "partition_list": [
            {"reference": f"slappart{i}", "tap": {"name": f"tap{i}"},
             "address_list": [{"addr": addr, "netmask": "255.0.0.0"}]}
            for i, addr in enumerate(addresses)
        ],
    }  # fmt: skip
    assert client.post("/loadComputerConfigurationFromXML", xml=dumps(computer)) == (200, "done")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(tmp_path: Path, clock: Clock) -> Client:
    app = create_app(ProxyConfig(path=None, database_uri=str(tmp_path / "db"), computer_id="COMP"),
                     clock=clock)  # fmt: skip
    c = Client(app)
    _format(c, [f"10.0.0.{i}" for i in range(3)])
    return c


def _timestamps(client: Client) -> dict[str, str | None]:
    return {
        k: v.get("_parameter_dict", {}).get("timestamp") for k, v in client.partitions().items()
    }


@pytest.mark.parametrize(
    ("method", "path", "form", "status", "reason"),
    [
        ("GET", "/getFullComputerInformation", {}, 400, "missing parameter 'computer_id'"),
        ("GET", "/getFullComputerInformation", {"computer_id": "X"}, 404, "not registered"),
        ("GET", "/registerComputerPartition",
         {"computer_reference": "COMP", "computer_partition_reference": "nope"}, 404, "unknown"),
        ("POST", "/supplySupply", {"url": SR, "computer_id": "COMP", "state": "x"}, 400, "state"),
        ("POST", "/loadComputerConfigurationFromXML", {"xml": "<bogus"}, 400, "bad marshalled"),
        ("POST", "/loadComputerConfigurationFromXML", {"xml": dumps([1])}, 400, "dictionary"),
        ("POST", "/loadComputerConfigurationFromXML", {"xml": dumps({"x": 1})}, 400, "lacks"),
        ("POST", "/softwareInstanceBang", {"computer_id": "COMP"}, 400, "computer_partition_id"),
        ("POST", "/softwareInstanceRename",
         {"computer_id": "COMP", "computer_partition_id": "slappart0", "new_name": "x"}, 404, ""),
        ("POST", "/setComputerPartitionConnectionXml",
         {"computer_id": "COMP", "computer_partition_id": "nope", "connection_xml": dumps({})},
         404, "unknown partition"),
        ("POST", "/startedComputerPartition",
         {"computer_id": "COMP", "computer_partition_id": "nope"}, 404, "unknown partition"),
        ("POST", "/buildingSoftwareRelease", {"computer_id": "NOPE", "url": SR}, 404,
         "not registered"),
        ("GET", "/requestComputerPartition", {}, 405, "not allowed"),
        ("GET", "/noSuchMethod", {}, 404, "unknown route"),
        ("GET", "/hateoas/partitions/nope", {}, 404, "no instance tree"),
        ("GET", "/hateoas/", {"mode": "x"}, 400, "Unhandled mode"),
        ("GET", "/hateoas/", {"mode": "search", "query": "x"}, 400, "Unhandled query"),
        ("GET", "/hateoas/", {"mode": "traverse", "relative_url": "http://evil/"}, 400, "traverse"),
    ],
)  # fmt: skip
def test_bad_input_is_a_one_line_4xx(
    client: Client, method: str, path: str, form: dict[str, Any], status: int, reason: str
) -> None:
    got, body = client.call(method, path, form)
    assert got == status
    assert reason in body and "\n" not in body and "Traceback" not in body


def test_request_errors(client: Client) -> None:
    status, body = client.post(
        "/requestComputerPartition", software_release=SR, software_type="default",
        partition_reference="x", partition_parameter_xml=dumps({}), filter_xml=dumps({}),
        shared_xml=dumps(False),
    )  # fmt: skip
    assert (status, body) == (400, "missing parameter 'state'")
    assert client.request("x", state="bogus")[0] == 400
    assert client.request("")[0] == 400
    status, body = client.call(
        "POST", "/requestComputerPartition",
        {"software_release": SR, "software_type": "", "partition_reference": "y",
         "partition_parameter_xml": dumps({}), "filter_xml": dumps({}), "state": dumps(None),
         "shared_xml": dumps(False)},
        headers={"Authorization": "X-SlapPartition computer_id=COMP, computer_partition_id=nope"},
    )  # fmt: skip
    assert status == 400 and "No partition matching the authorization header" in body


def test_allocation_identity_and_exhaustion(client: Client) -> None:
    ids = [client.request(f"i{k}")[1].state["slap_computer_partition_id"] for k in range(3)]
    assert ids == ["slappart0", "slappart1", "slappart2"]
    assert client.request("i1")[1].state["slap_computer_partition_id"] == "slappart1"
    status, body = client.request("i3")
    assert (status, body) == (404, "No free computer partition found for: i3")


def test_timestamps_change_exactly_when_the_node_must_reprocess(client: Client) -> None:
    client.request("root", params={"a": "1"})
    first = _timestamps(client)
    assert first["slappart0"] is not None
    client.request("root", params={"a": "1"})
    assert _timestamps(client) == first  # identical request: nothing to do
    client.request("root", params={"a": "2"})
    second = _timestamps(client)
    assert second["slappart0"] != first["slappart0"]
    # a child requested by the root; its published parameters re-timestamp the root only
    form: dict[str, Any] = {"computer_id": "COMP", "computer_partition_id": "slappart0"}
    child = client.request("child", **form)[1].state["slap_computer_partition_id"]
    before = _timestamps(client)
    conn = {"computer_id": "COMP", "computer_partition_id": child,
            "connection_xml": dumps({"url": "http://x"})}  # fmt: skip
    assert client.post("/setComputerPartitionConnectionXml", **conn) == (200, "done")
    after = _timestamps(client)
    assert after["slappart0"] != before["slappart0"] and after[child] == before[child]
    client.post("/setComputerPartitionConnectionXml", **conn)
    assert _timestamps(client) == after  # the same parameters again: no change
    # rename changes nothing the node sees; bang re-timestamps the whole tree
    client.post("/softwareInstanceRename", computer_id="COMP", computer_partition_id=child,
                new_name="renamed")  # fmt: skip
    assert _timestamps(client) == after
    client.post("/softwareInstanceBang", computer_id="COMP", computer_partition_id=child,
                message="x")  # fmt: skip
    banged = _timestamps(client)
    assert banged["slappart0"] != after["slappart0"] and banged[child] != after[child]


def test_stopping_a_tree_and_destroying_it(client: Client) -> None:
    client.request("root")
    form: dict[str, Any] = {"computer_id": "COMP", "computer_partition_id": "slappart0"}
    client.request("child", **form)
    assert client.request("root", state="stopped")[1].state["_requested_state"] == "stopped"
    # the child takes the root's state when its parent requests it again
    assert client.request("child", **form)[1].state["_requested_state"] == "stopped"
    # state None on a stopped instance answers "started" while it stays stopped (upstream)
    assert client.request("root")[1].state["_requested_state"] == "started"
    assert client.partitions()["slappart0"]["_requested_state"] == "stopped"
    destroyed: dict[str, Any] = {"computer_id": "COMP", "computer_partition_id": "slappart0"}
    status, body = client.post("/destroyedComputerPartition", **destroyed)
    assert (status, body) == (200, "Not destroying yet because this partition has child "
                              "partitions: child")  # fmt: skip
    assert client.partitions()["slappart1"]["_requested_state"] == "destroyed"
    assert client.post("/destroyedComputerPartition", computer_id="COMP",
                       computer_partition_id="slappart1") == (200, "OK")  # fmt: skip
    assert client.post("/destroyedComputerPartition", **destroyed) == (200, "OK")
    assert client.partitions()["slappart0"]["_software_release_document"] is None
    assert client.request("again")[1].state["slap_computer_partition_id"] == "slappart0"


def test_shared_instances(client: Client) -> None:
    client.request("host")
    status, shared = client.request("web", shared=True, params={"url": "http://x", "n": 2})
    assert status == 200
    assert shared.state["slap_computer_partition_id"] == "slappart0"
    assert shared.state["_parameter_dict"] == {"n": "2", "url": "http://x"}
    entry = client.partitions()["slappart0"]["_parameter_dict"]["slave_instance_list"]
    assert entry == [{"n": 2, "slap_software_type": "default", "slave_reference": "_web",
                      "slave_title": "_web", "url": "http://x"}]  # fmt: skip
    client.post("/setComputerPartitionConnectionXml", computer_id="COMP",
                computer_partition_id="slappart0", connection_xml=dumps({"a": "b"}),
                slave_reference="_web")  # fmt: skip
    assert client.request("web", shared=True, params={"url": "http://x", "n": 2})[1].state[
        "_connection_dict"] == {"a": "b"}  # fmt: skip
    client.request("web", shared=True, state="destroyed")
    assert client.partitions()["slappart0"]["_parameter_dict"]["slave_instance_list"] == []
    status, body = client.request("orphan", shared=True, filter_kw={"instance_guid": "COMP-x"})
    assert status == 404 and "No partition corresponding to slave request" in body


def test_frontend_shortcut(client: Client) -> None:
    _, body = client.post(
        "/requestComputerPartition",
        software_release="http://git.erp5.org/gitweb/slapos.git/blob_plain/HEAD:/software/"
        "apache-frontend/software.cfg",
        software_type="default", partition_reference="f",
        partition_parameter_xml=dumps({"url": "http://backend:8080/x"}), filter_xml=dumps({}),
        state=dumps(None), shared_xml=dumps(True),
    )  # fmt: skip
    answer = loads(body)
    assert isinstance(answer, WireObject) and answer.cls == "ComputerPartition"
    assert answer.state["_connection_dict"] == {"secure_access": "http://backend:8080/x",
                                                "domain": "backend:8080"}  # fmt: skip


def test_hateoas_root_and_documents(client: Client) -> None:
    client.request("svc", params={"k": "v"})
    status, body = client.get("/getHateoasUrl")
    assert (status, body) == (200, "http://127.0.0.1/hateoas/")
    status, _ = client.call("GET", "/hateoas")
    assert status == 308
    import json

    status, body = client.call("GET", "/hateoas/", headers={"X-Forwarded-Proto": "https",
                                                          "X-Forwarded-Prefix": "/p"})  # fmt: skip
    links = json.loads(body)["_links"]
    assert links["traverse"]["href"].startswith("https://127.0.0.1/p/hateoas/?mode=traverse")
    status, body = client.get("/hateoas/partitions/svc")
    view = json.loads(body)["_embedded"]["_view"]
    assert view["my_slap_state"]["default"] == "started"
    assert view["my_url_string"]["default"] == SR
    status, body = client.get("/hateoas/computer_module/Base_getComputerToken")
    assert status == 410


def test_jsonrpc_errors(client: Client) -> None:
    import json

    status, body = client.call("POST", "/slapos.get.v0.instance_tree", body=b"{bad")
    assert status == 400 and json.loads(body)["title"].startswith("body is not JSON")
    status, body = client.call("POST", "/slapos.get.v0.instance_tree", body=b'{"title": 1}')
    assert (status, json.loads(body)["title"]) == (400, "1 is not of type 'string'")
    status, body = client.call("POST", "/slapos.get.v0.hateoas_url", body=b"{}",
                               headers={"Accept": "text/html"})  # fmt: skip
    assert status == 406
    status, body = client.call("POST", "/slapos.get.v0.software_instance",
                               body=b'{"instance_guid": "nope"}')  # fmt: skip
    assert (status, json.loads(body)["title"]) == (403, "instance_guid nope not handled.")


def test_in_memory_connection(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    app = create_app(ProxyConfig(path=None, database_uri=":memory:", computer_id="C"), conn)
    status, body = Client(app).get("/getFullComputerInformation", computer_id="C")
    assert status == 200 and loads(body).state["_computer_partition_list"] == []
    file_conn = sqlite3.connect(tmp_path / "f.db")
    app = create_app(ProxyConfig(path=None, database_uri="x", computer_id="C"), file_conn)
    assert app.database == str(tmp_path / "f.db")


def test_cached_answer_follows_writes(client: Client) -> None:
    before = client.get("/getFullComputerInformation", computer_id="COMP")
    assert client.get("/getFullComputerInformation", computer_id="COMP") == before
    client.post("/supplySupply", url=SR, computer_id="COMP", state="available")
    after = client.get("/getFullComputerInformation", computer_id="COMP")
    assert after != before and SR in after[1]


def test_with_tls_identities_only_the_host_publishes_for_a_shared_instance(tmp_path: Path) -> None:
    from slapos.proxy.config import TLSConfig

    tls = TLSConfig(certificate=tmp_path / "c", key=tmp_path / "k", ca=tmp_path / "ca")
    config = ProxyConfig(path=None, database_uri=str(tmp_path / "db"), computer_id="COMP", tls=tls)
    c = Client(create_app(config), peer="user:admin")
    computer = {"reference": "COMP", "partition_list": [
        {"reference": f"slappart{i}", "address_list": []} for i in range(2)]}  # fmt: skip
    c.post("/loadComputerConfigurationFromXML", xml=dumps(computer))
    c.request("host")
    c.request("web", shared=True)
    form: dict[str, Any] = {
        "computer_id": "COMP",
        "connection_xml": dumps({"a": "b"}),
        "slave_reference": "_web",
    }
    status, body = c.post("/setComputerPartitionConnectionXml", computer_partition_id="slappart1",
                          **form)  # fmt: skip
    assert status == 403 and "hosted by 'slappart0'" in body
    assert c.post("/setComputerPartitionConnectionXml", computer_partition_id="slappart0",
                  **form) == (200, "done")  # fmt: skip


def test_request_answers_the_addresses_of_the_last_format(client: Client) -> None:
    status, answer = client.request("web")
    assert status == 200 and answer.state["ip_list"] == [("tap0", "10.0.0.0")]
    _format(client, ["10.9.9.1", "10.9.9.2", "10.9.9.3"])  # addresses remembered: forgotten
    status, answer = client.request("web")
    assert status == 200 and answer.state["ip_list"] == [("tap0", "10.9.9.1")]


def test_a_failed_write_leaves_no_remembered_addresses(client: Client) -> None:
    from slapos.proxy.service import Master

    assert client.request("web")[1].state["ip_list"] == [("tap0", "10.0.0.0")]

    def reformat_then_fail(master: Master) -> None:
        partitions = [("slappart0", [("tap0", "10.7.7.7", None)])]
        master.store.format_computer("COMP", None, None, partitions)
        assert master.store.addresses("slappart0", "COMP") == [("tap0", "10.7.7.7")]
        raise RuntimeError("the transaction fails after reading the new addresses")

    with pytest.raises(RuntimeError):
        client.app.write(None, reformat_then_fail)
    assert client.request("web")[1].state["ip_list"] == [("tap0", "10.0.0.0")]


def test_a_child_on_another_computer_wakes_its_requester_up(client: Client) -> None:
    """A child and a shared instance placed on another computer: what they publish
    re-timestamps the requesting partition, on its own computer."""
    _format(client, [f"10.0.1.{i}" for i in range(2)], "OTHER", "127.0.0.2")
    on_other = {"computer_guid": "OTHER"}
    client.request("host", filter_kw=on_other)  # OTHER/slappart0
    client.request("root")  # COMP/slappart0
    form: dict[str, Any] = {"computer_id": "COMP", "computer_partition_id": "slappart0"}
    status, kid = client.request("kid", filter_kw=on_other, **form)
    assert status == 200 and kid.state["slap_computer_id"] == "OTHER"
    client.request("svc", shared=True, filter_kw=on_other, **form)

    before = _timestamps(client)["slappart0"]
    published: dict[str, Any] = {"computer_id": "OTHER", "computer_partition_id": "slappart1",
                 "connection_xml": dumps({"url": "http://kid"})}  # fmt: skip
    assert client.post("/setComputerPartitionConnectionXml", **published) == (200, "done")
    after_child = _timestamps(client)["slappart0"]
    assert after_child != before, "the child's requester on COMP was not woken up"

    published = {"computer_id": "OTHER", "computer_partition_id": "slappart0",
                 "connection_xml": dumps({"url": "http://svc"}),
                 "slave_reference": "root_svc"}  # fmt: skip
    assert client.post("/setComputerPartitionConnectionXml", **published) == (200, "done")
    assert _timestamps(client)["slappart0"] != after_child, "shared: requester not woken up"
    _, shared = client.request("svc", shared=True, filter_kw=on_other, **form)
    assert shared.state["_connection_dict"] == {"url": "http://svc"}


def test_a_status_report_keeps_the_cached_answer(client: Client) -> None:
    client.request("root")
    client.partitions()
    generation = client.app.current_generation()
    form: dict[str, Any] = {"computer_id": "COMP", "computer_partition_id": "slappart0"}
    assert client.post("/startedComputerPartition", **form) == (200, "Ignored")
    assert client.app.current_generation() == generation  # nothing a node reads changed
    client.request("root", params={"a": "1"})
    assert client.app.current_generation() == generation + 1


def test_the_same_configuration_posted_again_changes_nothing(client: Client) -> None:
    client.request("root")
    before = client.partitions()
    generation = client.app.current_generation()
    _format(client, ["10.0.0.0", "10.0.0.1", "10.0.0.2"])  # what the fixture posted
    assert client.app.current_generation() == generation, "a no-op format was written"
    assert client.partitions() == before
    _format(client, ["10.0.0.9", "10.0.0.1", "10.0.0.2"])  # one address differs
    assert client.app.current_generation() == generation + 1
    assert client.partitions()["slappart0"]["_parameter_dict"]["ip_list"] == [("tap0", "10.0.0.9")]
