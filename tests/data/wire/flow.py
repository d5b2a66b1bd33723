"""The call sequence recorded in upstream-1.26.1-traffic.json.

Written against the public slap API only, so it runs unchanged with upstream's library
(capture.py) and with ours (tests/unit/slap/test_replay.py).
"""

import json

SR = "https://example.invalid/software/demo/software.cfg"
WEIRD = "a&b<c>\"d' \u00e9 \u20ac\n\ttab"


def flow(slap_module, dumps, url, cid):
    s = slap_module.slap()
    s.initializeConnection(url)
    comp = s.registerComputer(cid)
    parts = []
    for i in range(3):
        parts.append(
            {
                "reference": f"slappart{i}",
                "address_list": [
                    {"addr": f"10.0.0.{10 + i}", "netmask": "255.255.0.0"},
                    {"addr": f"fd46::{10 + i}", "netmask": "ffff:ffff:ffff:ffff::"},
                ],
                "tap": {"name": f"slaptap{i}"},
            }
        )
    comp.updateConfiguration(
        dumps(
            {
                "reference": cid,
                "address": "fd46::1",
                "netmask": "ffff:ffff:ffff:ffff::",
                "partition_list": parts,
            }
        )
    )
    s.registerSupply().supply(SR, cid)
    s.registerSupply().supply("https://example.invalid/software/old/software.cfg", cid, "destroyed")
    oo = s.registerOpenOrder()
    root = oo.request(SR, "MyRoot", {"foo": "bar", "num": 1, "weird": WEIRD}, software_type="web")
    oo.request(
        SR,
        "JsonRoot",
        {"_": json.dumps({"a": [1, 2], "b": "x"})},
        filter_kw={"computer_guid": cid},
        state="stopped",
    )
    p = s.registerComputerPartition(cid, root.getId())
    p.setConnectionDict({"url": "http://r.example.invalid", "k": "v"})
    p.getInstanceParameterDict()
    p.getCertificate()
    oo.request(SR, "MyShared", {"url": "http://x"}, software_type="web", shared=True)
    child = p.request(SR, "child", "Child", partition_parameter_kw={"x": "1"})
    p.setConnectionDict({"shared-url": "http://s"}, slave_reference="_MyShared")
    p.started()
    p.bang("bang!")
    c = s.registerComputerPartition(cid, child.getId())
    c.rename("Renamed")
    again = oo.request(SR, "MyRoot", {"foo": "bar", "num": 1, "weird": WEIRD}, software_type="web")
    connection = again.getConnectionParameterDict()
    comp2 = s.registerComputer(cid)
    partitions = comp2.getComputerPartitionList()
    products = s.getSoftwareReleaseListFromSoftwareProduct("nothing")
    refused = None
    try:
        oo.request(SR, "TooMany")
    except slap_module.NotFoundError as exc:
        refused = exc
    return {
        "connection": connection,
        "partitions": partitions,
        "products": products,
        "refused": refused,
    }
