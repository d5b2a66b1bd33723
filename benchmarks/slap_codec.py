"""The SLAP codec alone: microseconds per call of `slapos.slap.marshal` / `slapos.slap.wire`.

    .venv/bin/python benchmarks/slap_codec.py [--partitions 200] [--repeat 5]

Every request to the proxy decodes a few small documents (parameter dict, filter, state)
and encodes one answer; every answer is decoded by the client. Cases:
  * a SoftwareInstance answer to requestComputerPartition (captured from slapos.core
    1.26.1, tests/data/wire), decoded/encoded as the proxy (WireObject) and as the client
    (real slap classes) see it;
  * a small parameter dict (`{"i": "5", "v": "2"}`);
  * getFullComputerInformation for --partitions busy partitions (benchmarks/slap_wire.py);
  * xml2dict / dict2xml on a 10-parameter instance XML document.
Best of --repeat timeit runs, in microseconds per call.

Targets (issue 4): SoftwareInstance answer loads <= 20 us and dumps <= 15 us, small dict
loads <= 5 us. Measured on the 2-core dev machine (2026-11-26), before -> after the
regex fast path and the flattened encoder:

    answer loads (proxy)   59 -> 13 us      small dict loads   16 -> 3 us
    answer loads (client)  ...
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.slap_wire import big_computer  # noqa: E402
from slapos.slap import marshal, wire  # noqa: E402

TRAFFIC = REPO / "tests" / "data" / "wire" / "upstream-1.26.1-traffic.json"
SMALL_DICT = (
    '<marshal><dictionary id="i2"><string>i</string><string>5</string>'
    "<string>v</string><string>2</string></dictionary></marshal>"
)


def software_instance_answers() -> tuple[str, str]:
    """Answers to requestComputerPartition: plain values (~1 kB), and with escapes."""
    records = json.loads(TRAFFIC.read_text())
    answers = [
        r["body"] for r in records if r["path"] == "requestComputerPartition" and "body" in r
    ]
    plain = next(a for a in answers if "slappart2" in a)
    escaped = next(a for a in answers if "&amp;amp;" in a)
    return str(plain), str(escaped)


def per_call(function: Callable[[], Any], repeat: int) -> float:
    """Best time of one call in microseconds."""
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    answer, escaped = software_instance_answers()
    proxy_value = marshal.loads(answer)
    client_value = wire.loads(answer)
    small = marshal.loads(SMALL_DICT)
    big = big_computer(args.partitions)
    big_value = wire.loads(big)
    parameters = {f"parameter-{k}": f"value {k} & <{k}>" for k in range(10)}
    instance_xml = marshal.dict2xml(parameters)
    assert marshal.dumps(proxy_value) == answer and wire.dumps(client_value) == answer
    assert marshal.dumps(small) == SMALL_DICT and wire.dumps(big_value) == big
    assert marshal.xml2dict(instance_xml) == parameters

    cases: list[tuple[str, Callable[[], Any]]] = [
        (f"answer ET.XML only ({len(answer)} B)", lambda: ET.XML(answer)),
        ("answer loads (proxy, WireObject)", lambda: marshal.loads(answer)),
        ("answer loads (client, slap class)", lambda: wire.loads(answer)),
        (f"escaped answer loads ({len(escaped)} B)", lambda: wire.loads(escaped)),
        ("answer dumps (proxy, WireObject)", lambda: marshal.dumps(proxy_value)),
        ("answer dumps (client, slap class)", lambda: wire.dumps(client_value)),
        ("small dict ET.XML only", lambda: ET.XML(SMALL_DICT)),
        ("small dict loads", lambda: marshal.loads(SMALL_DICT)),
        ("small dict dumps", lambda: marshal.dumps(small)),
        (f"full info loads ({args.partitions} partitions)", lambda: wire.loads(big)),
        (f"full info dumps ({len(big) / 1e6:.2f} MB)", lambda: wire.dumps(big_value)),
        ("xml2dict (10 parameters)", lambda: marshal.xml2dict(instance_xml)),
        ("dict2xml (10 parameters)", lambda: marshal.dict2xml(parameters)),
    ]
    width = max(len(name) for name, _ in cases)
    for name, function in cases:
        repeat = 3 if "full info" in name else args.repeat
        print(f"{name:<{width}}  {per_call(function, repeat):12.1f} us")


if __name__ == "__main__":
    main()
