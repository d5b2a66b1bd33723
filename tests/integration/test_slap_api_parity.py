"""Every public method of upstream's slapos.slap classes exists here with a compatible
signature (same parameter names, in the same order, same defaults)."""

from __future__ import annotations

import inspect
import json

import slapos.slap

CLASSES = [
    "slap",
    "Computer",
    "ComputerPartition",
    "SoftwareRelease",
    "SoftwareInstance",
    "OpenOrder",
    "Supply",
    "Token",
    "SoftwareProductCollection",
]
DUMP = """
import inspect, json, slapos.slap
out = {}
for name in %r:
    cls = getattr(slapos.slap, name)
    for attr, value in vars(cls).items():
        if attr.startswith("_") and attr not in ("__init__",):
            continue
        if callable(value):
            sig = inspect.signature(value)
            out[name + "." + attr] = [
                [p.name, repr(p.default) if p.default is not p.empty else None, str(p.kind)]
                for p in sig.parameters.values()
            ]
print(json.dumps(out))
"""


def signature(value):
    return [
        [p.name, repr(p.default) if p.default is not p.empty else None, str(p.kind)]
        for p in inspect.signature(value).parameters.values()
    ]


def test_public_api_matches_upstream(upstream):
    result = upstream.python_code(DUMP % (CLASSES,))
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)
    assert len(theirs) >= 60
    missing, different = [], []
    for qualified, params in sorted(theirs.items()):
        class_name, attr = qualified.split(".")
        value = getattr(getattr(slapos.slap, class_name), attr, None)
        if value is None:
            missing.append(qualified)
            continue
        ours = signature(value)
        # our extra keyword-only parameters are fine; upstream's must all be there in order
        if ours[: len(params)] != params:
            different.append((qualified, params, ours))
    assert missing == []
    assert different == []


def test_exceptions_exported(upstream):
    names = ["NotFoundError", "ResourceNotReady", "ServerError", "ConnectionError"]
    for name in names:
        assert issubclass(getattr(slapos.slap, name), Exception)
    from slapos.slap.exception import AuthenticationError  # noqa: F401
