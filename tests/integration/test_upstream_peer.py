"""The upstream peer itself works: its proxy starts and its library talks to it."""

from __future__ import annotations


def test_upstream_proxy_answers_its_own_library(upstream, upstream_proxy):
    result = upstream.python_code(
        f"""
        import slapos.slap
        slap = slapos.slap.slap()
        slap.initializeConnection({upstream_proxy.url!r})
        slap.registerSupply().supply("http://x.invalid/sr.cfg", computer_guid="local_computer")
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
