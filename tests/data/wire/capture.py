"""Record upstream's slapos.slap talking to a master (run with upstream's Python).

<upstream venv>/bin/python capture.py <master url> COMP-LOCAL out.json
"""

import json
import os
import sys

import slapos.slap
import slapos.slap.hateoas as hateoas
from slapos.util import dumps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flow import flow

records = []
original = hateoas.ConnectionHelper.do_request


def recording(self, method, path, params=None, data=None, headers=None, auth=None):
    sent = dict(data) if data else None
    try:
        response = original(
            self, method, path, params=params, data=data, headers=headers, auth=auth
        )
    except Exception as exc:
        records.append({"path": path, "params": params, "data": sent, "status": type(exc).__name__})
        raise
    records.append(
        {
            "path": path,
            "params": params,
            "data": sent,
            "status": response.status_code,
            "body": response.text,
            "auth": response.request.headers.get("Authorization"),
        }
    )
    return response


hateoas.ConnectionHelper.do_request = recording
flow(slapos.slap, dumps, sys.argv[1], sys.argv[2])
with open(sys.argv[3], "w") as out:
    json.dump(records, out, indent=1, default=lambda b: b.decode())
