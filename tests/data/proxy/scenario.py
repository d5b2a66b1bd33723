"""A walk through protocol.md §8 with upstream's slapos.slap library (runs in its venv).

Usage: python scenario.py MASTER_URL COMPUTER_ID -> JSON list of steps on stdout.
Every step records what a user of the library observes plus the raw wire answers,
with timestamps replaced by "TS" and, separately, which partitions were re-timestamped.
The same script runs against our proxy and 1.26.1's; the test compares the records.
"""

import json
import re
import sys

import slapos.slap
from slapos.slap import exception
from slapos.util import dumps, loads

URL, COMPUTER = sys.argv[1], sys.argv[2]
SR = "http://sr.example.invalid/software.cfg"
SR2 = "http://sr.example.invalid/other.cfg"
steps = []
slap = slapos.slap.slap()
slap.initializeConnection(URL)
helper = slap._connection_helper
TS = re.compile(r"<string>timestamp</string><string>[0-9.e+]+</string>")
last = {}


def full():
    return helper.GET("getFullComputerInformation", params={"computer_id": COMPUTER}).decode()


def stamps(raw):
    result = {}
    for match in re.finditer(
        r"<tuple><string>[^<]*</string><string>(slappart\d+)</string><none/></tuple>(.*?)</object>",
        raw,
        re.S,
    ):
        ts = re.search(r"<string>timestamp</string><string>([0-9.e+]+)</string>", match.group(2))
        result[match.group(1)] = ts.group(1) if ts else None
    return result


def record(name, value=None, *, snapshot=True):
    global last
    step = {"step": name, "value": value}
    if snapshot:
        raw = full()
        now = stamps(raw)
        step["retimestamped"] = sorted(p for p, t in now.items() if t != last.get(p))
        step["full"] = TS.sub("<string>timestamp</string><string>TS</string>", raw)
        last = now
    steps.append(step)


def attempt(call):
    try:
        return {"ok": call()}
    except exception.NotFoundError:
        return {"error": "NotFoundError"}
    except exception.ServerError:
        return {"error": "ServerError"}
    except Exception as exc:  # raw HTTPError (400, ...)
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return {"error": type(exc).__name__, "status": status}


def instance(p):
    params = dict(p.getInstanceParameterDict())
    params.pop("timestamp", None)
    return {
        "id": p.getId(),
        "state": p._requested_state if hasattr(p, "_requested_state") else None,
        "params": params,
        "connection": p.getConnectionParameterDict(),
        "guid": getattr(p, "_instance_guid", None),
    }


computer = {
    "reference": COMPUTER,
    "address": "127.0.0.1",
    "netmask": "255.0.0.0",
    "partition_list": [
        {
            "reference": f"slappart{i}",
            "tap": {"name": f"slaptap{i}"},
            "address_list": [
                {"addr": f"10.0.0.{10 + i}", "netmask": "255.255.0.0"},
                {"addr": f"fd46::{10 + i}", "netmask": "ffff:ffff:ffff:ffff::"},
            ],
        }
        for i in range(4)
    ],
}
record(
    "format",
    helper.POST("loadComputerConfigurationFromXML", data={"xml": dumps(computer)}).decode(),
)
supply = slap.registerSupply()
supply.supply(SR, COMPUTER)
supply.supply(SR2, COMPUTER, "destroyed")
record("supply")
order = slap.registerOpenOrder()
root = order.request(SR, "MyRoot", partition_parameter_kw={"foo": "bar", "num": 1})
record("request root", instance(root))
record(
    "re-request root identical",
    instance(order.request(SR, "MyRoot", partition_parameter_kw={"foo": "bar", "num": 1})),
)
root_part = slap.registerComputerPartition(COMPUTER, root.getId())
child = root_part.request(SR, "default", "MyChild", partition_parameter_kw={"c": "1"})
record("request child", instance(child))
shared = root_part.request(
    SR, "default", "MyShared", shared=True, partition_parameter_kw={"url": "http://x", "n": 2}
)
record(
    "request shared",
    {"id": shared.getId(), "params": shared._parameter_dict, "connection": shared._connection_dict},
)
child_part = slap.registerComputerPartition(COMPUTER, child.getId())
child_part.setConnectionDict({"k": "v", "url": "http://r.example.invalid"})
record("child publishes")
child_part.setConnectionDict({"k": "v", "url": "http://r.example.invalid"})
record("child republishes identical")
root_part.setConnectionDict({"url": "http://front"}, slave_reference="MyRoot_MyShared")
record("host publishes for shared")
again = root_part.request(
    SR, "default", "MyShared", shared=True, partition_parameter_kw={"url": "http://x", "n": 2}
)
record("re-request shared", {"params": again._parameter_dict, "connection": again._connection_dict})
record(
    "re-request child from root",
    instance(root_part.request(SR, "default", "MyChild", partition_parameter_kw={"c": "1"})),
)
user_shared = order.request(SR, "UserShared", shared=True, partition_parameter_kw={"a": "b"})
record("user shared", {"id": user_shared.getId(), "params": user_shared._parameter_dict})
record("bang", attempt(lambda: child_part.bang("boom")))
record("rename child", attempt(lambda: child_part.rename("MyChildRenamed")))
record(
    "stop root",
    instance(
        order.request(
            SR, "MyRoot", partition_parameter_kw={"foo": "bar", "num": 1}, state="stopped"
        )
    ),
)
record(
    "state None on stopped root",
    instance(order.request(SR, "MyRoot", partition_parameter_kw={"foo": "bar", "num": 1})),
)
record(
    "child re-requested under stopped root",
    instance(root_part.request(SR, "default", "MyChildRenamed", partition_parameter_kw={"c": "1"})),
)
record("register partition", instance(slap.registerComputerPartition(COMPUTER, child.getId())))
record("certificate", root_part.getCertificate(), snapshot=False)
record(
    "related instances",
    attempt(lambda: root_part.setComputerPartitionRelatedInstanceList(["MyChild"]) or None),
    snapshot=False,
)
sr = slapos.slap.SoftwareRelease(SR, COMPUTER)
sr._connection_helper = helper
record(
    "sr reports",
    [
        attempt(sr.building),
        attempt(sr.available),
        attempt(lambda: sr.error("log")),
    ],
)
sr2 = slapos.slap.SoftwareRelease(SR2, COMPUTER)
sr2._connection_helper = helper
record("sr destroyed", attempt(sr2.destroyed))
record(
    "partition reports",
    [
        attempt(child_part.started),
        attempt(child_part.stopped),
        attempt(lambda: child_part.error("bad")),
    ],
)
record(
    "destroy shared",
    attempt(
        lambda: root_part.request(
            SR,
            "default",
            "MyShared",
            shared=True,
            partition_parameter_kw={"url": "http://x", "n": 2},
            state="destroyed",
        ).getId()
    ),
)
record("destroy root", instance(order.request(SR, "MyRoot", state="destroyed")))
record(
    "destroyed root (has children)",
    helper.POST(
        "destroyedComputerPartition",
        data={"computer_id": COMPUTER, "computer_partition_id": root.getId()},
    ).decode(),
)
record("destroyed child", attempt(child_part.destroyed))
record(
    "destroyed root",
    helper.POST(
        "destroyedComputerPartition",
        data={"computer_id": COMPUTER, "computer_partition_id": root.getId()},
    ).decode(),
)
filled = [order.request(SR, f"Fill{i}").getId() for i in range(3)]
record("fill", filled)
record("no free partition", attempt(lambda: order.request(SR, "TooMany").getId()))
record("no host for shared", attempt(lambda: order.request(SR2, "S", shared=True).getId()))
record(
    "computer bang",
    loads(helper.POST("computerBang", data={"computer_id": COMPUTER, "message": "m"})),
    snapshot=False,
)
record(
    "products",
    attempt(lambda: slap.getSoftwareReleaseListFromSoftwareProduct("nope")),
    snapshot=False,
)
record(
    "unknown partition",
    attempt(lambda: slap.registerComputerPartition(COMPUTER, "nope").getState()),
    snapshot=False,
)
record(
    "unknown computer",
    attempt(lambda: len(slap.registerComputer("NOPE").getComputerPartitionList())),
    snapshot=False,
)
record(
    "bad supply state",
    attempt(
        lambda: helper.POST(
            "supplySupply", data={"url": SR, "computer_id": COMPUTER, "state": "bogus"}
        ).decode()
    ),
    snapshot=False,
)
record(
    "request without state",
    attempt(
        lambda: helper.POST(
            "requestComputerPartition",
            data={
                "software_release": SR,
                "software_type": "default",
                "partition_reference": "x",
                "partition_parameter_xml": dumps({}),
                "filter_xml": dumps({}),
                "shared_xml": dumps(False),
            },
        )
    ),
    snapshot=False,
)
record(
    "request with bad xml",
    attempt(
        lambda: helper.POST(
            "requestComputerPartition",
            data={
                "software_release": SR,
                "software_type": "default",
                "partition_reference": "x",
                "state": dumps(None),
                "partition_parameter_xml": "<marshal><oops",
                "filter_xml": dumps({}),
                "shared_xml": dumps(False),
            },
        )
    ),
    snapshot=False,
)
record(
    "rename unknown partition",
    attempt(
        lambda: helper.POST(
            "softwareInstanceRename",
            data={"computer_id": COMPUTER, "computer_partition_id": "nope", "new_name": "x"},
        ).decode()
    ),
    snapshot=False,
)
record(
    "destroyed unknown partition",
    attempt(
        lambda: helper.POST(
            "destroyedComputerPartition",
            data={"computer_id": COMPUTER, "computer_partition_id": "nope"},
        ).decode()
    ),
    snapshot=False,
)
print(json.dumps(steps, indent=1, sort_keys=True))
