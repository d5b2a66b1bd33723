"""Transport: status mapping, retries, timeouts, headers, one-line errors."""

from __future__ import annotations

import time

import pytest

from slapos import errors
from slapos.slap import (
    AuthenticationError,
    ConnectionError,
    HTTPError,
    NotFoundError,
    ResourceNotReady,
    ServerError,
    slap,
    wire,
)
from slapos.slap.session import MasterSession, body_summary, normalise_master_url
from tests.fakes import FakeClock
from tests.fixtures.common import free_port

COMPUTER_DOC = (
    '<marshal><object id="i2" module="slapos.slap.slap" class="Computer"><tuple>'
    '<string>COMP-C</string></tuple><dictionary id="i3"><string>_computer_id</string>'
    '<string>COMP-C</string><string>_computer_partition_list</string><list id="i4"/>'
    '<string>_software_release_list</string><list id="i5"/></dictionary></object></marshal>'
)


def test_normalise_master_url():
    assert normalise_master_url("http://h:80") == "http://h:80/"
    assert normalise_master_url("http://h/prefix") == "http://h/prefix/"
    assert normalise_master_url("http://::1") == "http://[::1]/"
    assert (
        normalise_master_url("http://fd00:0:0:0:0:0:0:1:8080")
        == "http://[fd00:0:0:0:0:0:0:1]:8080/"
    )
    assert normalise_master_url("http://[::1]:80/") == "http://[::1]:80/"


def test_body_summary():
    html = "<!doctype html><title>404 Not Found</title><h1>Not Found</h1><p>No free\npartition</p>"
    assert body_summary(html) == "No free partition"
    assert body_summary("x" * 500).endswith("...")
    # JSON errors (HATEOAS, JSON-RPC): their message, not the document
    assert body_summary('{"message": "computer tokens are not supported"}') == (
        "computer tokens are not supported"
    )
    assert body_summary('{"status": 400, "type": "x", "title": "bad input"}') == "bad input"
    assert body_summary('{"other": 1}') == '{"other": 1}'
    assert body_summary("{not json") == "{not json"


@pytest.mark.parametrize(
    "status,exc,library_base",
    [
        (404, NotFoundError, errors.NotFoundError),
        (408, ResourceNotReady, errors.NotReadyError),
        (500, ServerError, errors.MasterError),
        (503, ServerError, errors.MasterError),
        (400, HTTPError, errors.MasterError),
        (403, AuthenticationError, errors.MasterError),
    ],
)
def test_status_mapping(fake_master, status, exc, library_base):
    fake_master.routes["/getComputerStatus"] = (status, "<p>went wrong</p>")
    session = MasterSession(fake_master.url, timeout=5)
    with pytest.raises(exc) as info:
        session.get("getComputerStatus", {"computer_id": "C"})
    assert isinstance(info.value, library_base)
    message = str(info.value)
    assert "\n" not in message
    assert fake_master.url in message
    assert "getComputerStatus" in message
    assert f"HTTP {status}" in message
    assert "went wrong" in message


def test_malformed_answer_is_a_server_error(fake_master):
    fake_master.routes["/getFullComputerInformation"] = (200, "<html>oops</html>")
    s = slap()
    s.initializeConnection(fake_master.url, timeout=5)
    with pytest.raises(ServerError, match="malformed document") as info:
        s.registerComputer("COMP-C").getComputerPartitionList()
    assert "\n" not in str(info.value)


def test_full_information_falls_back_on_404(fake_master):
    fake_master.routes["/getComputerInformation"] = (200, COMPUTER_DOC)
    s = slap()
    s.initializeConnection(fake_master.url, timeout=5)
    assert s.registerComputer("COMP-C").getComputerPartitionList() == []
    assert [r.path for r in fake_master.requests] == [
        "/getFullComputerInformation",
        "/getComputerInformation",
    ]


def test_get_retries_connection_errors_with_backoff():
    clock = FakeClock()
    session = MasterSession(
        f"http://127.0.0.1:{free_port()}", timeout=2, retries=3, backoff=0.1, clock=clock
    )
    with pytest.raises(ConnectionError, match="cannot connect to master") as info:
        session.get("getFullComputerInformation", {"computer_id": "C"})
    assert clock.sleeps == [0.1, 0.2, 0.4]
    assert "\n" not in str(info.value)


def test_post_is_not_retried():
    clock = FakeClock()
    session = MasterSession(f"http://127.0.0.1:{free_port()}", timeout=2, clock=clock)
    with pytest.raises(ConnectionError):
        session.post("supplySupply", {"url": "u"})
    assert clock.sleeps == []


def test_timeout_is_bounded(fake_master):
    fake_master.delay = 2
    fake_master.routes["/getComputerStatus"] = (200, "<marshal><none/></marshal>")
    session = MasterSession(fake_master.url, timeout=0.3, retries=0)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="did not answer"):
        session.get("getComputerStatus")
    assert time.monotonic() - start < 1.5


def test_invalid_url():
    session = MasterSession("nothttp://x", timeout=1)
    with pytest.raises(ConnectionError) as info:
        session.get("getComputerStatus")
    assert "\n" not in str(info.value)


def test_partition_header_on_posts_only(fake_master):
    fake_master.routes["/prefix/registerComputerPartition"] = (404, "")
    fake_master.routes["/prefix/startedComputerPartition"] = (200, "Ignored")
    fake_master.routes["/prefix/setComputerPartitionConnectionXml"] = (200, "done")
    s = slap()
    s.initializeConnection(fake_master.url + "/prefix", timeout=5)
    partition = s.registerComputerPartition("COMP-1", "slappart3")
    partition.started()
    partition.setConnectionDict({"a": "b"})
    with pytest.raises(NotFoundError):
        partition.getState()
    started, published, registered = fake_master.requests
    assert started.path == "/prefix/startedComputerPartition"
    expected = "X-SlapPartition computer_id=COMP-1, computer_partition_id=slappart3"
    assert started.headers["Authorization"] == expected
    assert started.form == {"computer_id": ["COMP-1"], "computer_partition_id": ["slappart3"]}
    assert published.form["slave_reference"] == ["None"]  # upstream compatibility
    assert wire.loads(published.form["connection_xml"][0]) == {"a": "b"}
    assert "Authorization" not in registered.headers
    assert registered.query == {
        "computer_reference": ["COMP-1"],
        "computer_partition_reference": ["slappart3"],
    }
    assert started.headers["User-Agent"].startswith("slapos/")


def test_request_not_ready_gives_a_pending_partition(fake_master):
    fake_master.routes["/requestComputerPartition"] = (408, "")
    s = slap()
    s.initializeConnection(fake_master.url, timeout=5)
    pending = s.registerOpenOrder().request("http://sr", "title")
    with pytest.raises(ResourceNotReady):
        pending.getId()
    with pytest.raises(ResourceNotReady):
        pending.getState()


def test_hateoas_url_fetched_lazily(fake_master):
    s = slap()
    s.initializeConnection(fake_master.url, timeout=5)
    assert fake_master.requests == []
    fake_master.routes["/getHateoasUrl"] = (404, "")
    from slapos.slap import SlapException

    with pytest.raises(SlapException, match="Hateoas API required"):
        s.getOpenOrderDict()


def test_hateoas_url_master_down_says_so():
    # a master that does not answer is a connection error, not a missing HATEOAS API
    s = slap()
    s.initializeConnection(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ConnectionError) as info:
        s.getOpenOrderDict()
    message = str(info.value)
    assert "cannot connect to master" in message
    assert "API required" not in message and "master_rest_url" not in message
