"""Run upstream slapos.slap against upstream proxy and record every call."""
import json, sys, os
import slapos.slap.hateoas as h
from slapos.util import dumps
records = []
orig = h.ConnectionHelper.do_request
def rec(self, method, path, params=None, data=None, headers=None, auth=None):
    d = dict(data) if data else None
    try:
        r = orig(self, method, path, params=params, data=data, headers=headers, auth=auth)
    except Exception as e:
        records.append(dict(path=path, params=params, data=d, status=type(e).__name__))
        raise
    records.append(dict(path=path, params=params, data=d, status=r.status_code, body=r.text,
        auth=r.request.headers.get('Authorization')))
    return r
h.ConnectionHelper.do_request = rec
import slapos.slap
url, cid = sys.argv[1], sys.argv[2]
s = slapos.slap.slap(); s.initializeConnection(url)
comp = s.registerComputer(cid)
parts = []
for i in range(3):
    parts.append({"reference": "slappart%d" % i, "address_list": [{"addr": "10.0.0.%d" % (10+i), "netmask": "255.255.0.0"}, {"addr": "fd46::%d" % (10+i), "netmask": "ffff:ffff:ffff:ffff::"}], "tap": {"name": "slaptap%d" % i}})
comp.updateConfiguration(dumps({"reference": cid, "address": "fd46::1", "netmask": "ffff:ffff:ffff:ffff::", "partition_list": parts}))
s.registerSupply().supply("https://example.invalid/software/demo/software.cfg", cid)
s.registerSupply().supply("https://example.invalid/software/old/software.cfg", cid, "destroyed")
oo = s.registerOpenOrder()
root = oo.request("https://example.invalid/software/demo/software.cfg", "MyRoot", {"foo": "bar", "num": 1, "weird": "a&b<c>\"d' \u00e9 \u20ac\n\ttab"}, software_type="web")
jroot = oo.request("https://example.invalid/software/demo/software.cfg", "JsonRoot", {"_": json.dumps({"a": [1, 2], "b": "x"})}, filter_kw={"computer_guid": cid}, state="stopped")
p = s.registerComputerPartition(cid, root.getId())
p.setConnectionDict({"url": "http://r.example.invalid", "k": "v"})
p.getInstanceParameterDict()
p.getCertificate()
shared = oo.request("https://example.invalid/software/demo/software.cfg", "MyShared", {"url": "http://x"}, software_type="web", shared=True)
child = p.request("https://example.invalid/software/demo/software.cfg", "child", "Child", partition_parameter_kw={"x": "1"})
p.setConnectionDict({"shared-url": "http://s"}, slave_reference="_MyShared")
p.started(); p.bang("bang!"); 
c = s.registerComputerPartition(cid, child.getId()); c.rename("Renamed")
again = oo.request("https://example.invalid/software/demo/software.cfg", "MyRoot", {"foo": "bar", "num": 1, "weird": "a&b<c>\"d' \u00e9 \u20ac\n\ttab"}, software_type="web")
again.getConnectionParameterDict()
comp2 = s.registerComputer(cid); comp2.getComputerPartitionList()
s.getSoftwareReleaseListFromSoftwareProduct("nothing")
try: oo.request("https://example.invalid/software/demo/software.cfg", "TooMany")
except Exception: pass
json.dump(records, open(sys.argv[3], "w"), indent=1, default=lambda b: b.decode())
