"""Proxy variables are read once, when the session is made (not on every call)."""

from __future__ import annotations

from slapos.slap.session import MasterSession


def test_environment_proxy_is_used(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = MasterSession("http://master.example:5000/")
    assert session.proxies.get("http") == "http://127.0.0.1:3128"
    assert session.http.proxies.get("http") == "http://127.0.0.1:3128"


def test_no_proxy_is_honoured(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    session = MasterSession("http://127.0.0.1:5000/")
    assert "http" not in session.proxies


def test_environ_proxies_rules():
    from slapos.slap.transport import environ_proxies

    url = "http://10.1.2.3:5000/"
    assert environ_proxies(url, {}) == {}
    assert environ_proxies(url, {"HTTP_PROXY": "http://up:1", "http_proxy": "http://low:1"}) == {
        "http": "http://low:1"
    }
    # an empty lower-case variable unsets the upper-case one
    assert environ_proxies(url, {"HTTPS_PROXY": "http://p:1", "https_proxy": ""}) == {}
    assert environ_proxies(url, {"ALL_PROXY": "http://all:1"}) == {
        "http": "http://all:1",
        "https": "http://all:1",
    }
    # CGI: HTTP_PROXY may come from a client's "Proxy:" header
    assert environ_proxies(url, {"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}) == {}
    proxy = {"http_proxy": "http://p:1"}
    for no_proxy in ("*", "10.0.0.0/8", "10.1.2.3", "10.1.2.3:5000", "x.org, 10.1.2.3"):
        assert environ_proxies(url, {**proxy, "no_proxy": no_proxy}) == {}, no_proxy
    assert environ_proxies("http://m.example.org/", {**proxy, "NO_PROXY": ".example.org"}) == {}
    assert environ_proxies("http://m.example.org/", {**proxy, "no_proxy": "ample.org"}) == {
        "http": "http://p:1"
    }
    assert environ_proxies(url, {**proxy, "no_proxy": "192.168.0.0/16"}) == {"http": "http://p:1"}
