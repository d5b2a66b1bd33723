"""The `proxy` fixture serves the legacy API to upstream's library."""

from __future__ import annotations

import json

from tests.fixtures.upstream import RunningProxy, Upstream


def test_upstream_library_formats_and_requests(upstream: Upstream, proxy: RunningProxy) -> None:
    result = upstream.python_code(
        f"""
        import json
        import slapos.slap
        from slapos.util import dumps
        slap = slapos.slap.slap()
        slap.initializeConnection({proxy.url!r})
        computer = {{"reference": {proxy.computer_id!r}, "address": "127.0.0.1",
                     "netmask": "255.0.0.0", "partition_list": [
            {{"reference": "slappart%d" % i, "tap": {{"name": "tap%d" % i}},
              "address_list": [{{"addr": "10.0.0.%d" % i, "netmask": "255.0.0.0"}}]}}
            for i in range(2)]}}
        slap._connection_helper.POST("loadComputerConfigurationFromXML",
                                     data={{"xml": dumps(computer)}})
        p = slap.registerOpenOrder().request("http://sr/software.cfg", "root",
                                             partition_parameter_kw={{"a": 1}})
        print(json.dumps([p.getId(), p.getState(), p.getInstanceParameterDict()["a"]]))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == ["slappart0", "started", "1"]
