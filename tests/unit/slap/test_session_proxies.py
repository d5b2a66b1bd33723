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
