"""The SLAP codec alone: microseconds per call of `slapos.slap.marshal` / `slapos.slap.wire`.

    .venv/bin/python benchmarks/slap_codec.py [--partitions 200] [--repeat 5]
        [--baseline OLD_MARSHAL_PY]

Every request to the proxy decodes a few small documents (parameter dict, filter, state)
and encodes one answer; every answer is decoded by the client. Cases:
  * a SoftwareInstance answer to requestComputerPartition (captured from slapos.core
    1.26.1, tests/data/wire), decoded/encoded as the proxy (WireObject) and as the client
    (real slap classes) see it, and one with escaped and non-ASCII values;
  * a small parameter dict (`{"i": "5", "v": "2"}`);
  * getFullComputerInformation for --partitions busy partitions (benchmarks/slap_wire.py);
  * xml2dict / dict2xml on a 10-parameter instance XML document.
Best of --repeat timeit runs, three rounds; with --baseline (another marshal.py, e.g.
`git show 76c72f2:slapos/slap/marshal.py > /tmp/old.py`) the proxy-side cases are also
timed on it, alternating, so both columns see the same machine load.

Targets (issue 4): SoftwareInstance answer loads <= 20 us and dumps <= 15 us, small dict
loads <= 5 us. Results: benchmarks/RESULTS.rst.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import timeit
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.slap_wire import big_computer  # noqa: E402
from slapos.slap import instance_xml, marshal, wire  # noqa: E402

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


def load_baseline(path: str) -> ModuleType:
    """Another version of slapos/slap/marshal.py (standard library only), to compare."""
    spec = importlib.util.spec_from_file_location("baseline_marshal", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


Case = Callable[[Any], Callable[[], Any]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--baseline",
        metavar="MARSHAL_PY",
        help="also time this marshal.py (e.g. from `git show REV:slapos/slap/marshal.py`), "
        "alternating runs with the current one",
    )
    args = parser.parse_args()

    answer, escaped = software_instance_answers()
    client_value = wire.loads(answer)
    big = big_computer(args.partitions)
    big_value = wire.loads(big)
    parameters = {f"parameter-{k}": f"value {k} & <{k}>" for k in range(10)}
    instance_document = instance_xml.dict2xml(parameters)
    assert wire.dumps(client_value) == answer and wire.dumps(big_value) == big
    assert instance_xml.xml2dict(instance_document) == parameters
    codecs = [marshal] + ([load_baseline(args.baseline)] if args.baseline else [])
    for codec in codecs:
        assert codec.dumps(codec.loads(answer)) == answer
        assert codec.dumps(codec.loads(SMALL_DICT)) == SMALL_DICT

    def decoded(codec: Any, document: str) -> Any:
        return codec.loads(document)

    # Each case is built for a codec module (`marshal`, or the baseline); None: ours only.
    cases: list[tuple[str, Case | None, Callable[[], Any] | None]] = [
        (f"answer ET.XML only ({len(answer)} B)", None, lambda: ET.XML(answer)),
        ("answer loads (proxy, WireObject)", lambda m: lambda: m.loads(answer), None),
        ("answer loads (client, slap class)", None, lambda: wire.loads(answer)),
        (f"escaped answer loads ({len(escaped)} B)", lambda m: lambda: m.loads(escaped), None),
        ("answer dumps (proxy, WireObject)", lambda m: partial(m.dumps, decoded(m, answer)), None),
        ("answer dumps (client, slap class)", None, lambda: wire.dumps(client_value)),
        ("small dict ET.XML only", None, lambda: ET.XML(SMALL_DICT)),
        ("small dict loads", lambda m: lambda: m.loads(SMALL_DICT), None),
        ("small dict dumps", lambda m: partial(m.dumps, decoded(m, SMALL_DICT)), None),
        (f"full info loads ({args.partitions} partitions)", lambda m: lambda: m.loads(big), None),
        (
            f"full info dumps ({len(big) / 1e6:.2f} MB)",
            lambda m: partial(m.dumps, m.loads(big)),
            None,
        ),
        ("full info loads (client, slap class)", None, lambda: wire.loads(big)),
        ("xml2dict (10 parameters)", None, lambda: instance_xml.xml2dict(instance_document)),
        ("dict2xml (10 parameters)", None, lambda: instance_xml.dict2xml(parameters)),
    ]
    width = max(len(name) for name, _, _ in cases)
    header = f"{'us per call':>{width + 14}}" + (f"{'baseline':>14}" if args.baseline else "")
    print(header)
    for name, build, alone in cases:
        repeat = 1 if "full info" in name else args.repeat
        functions = [build(codec) for codec in codecs] if build else [alone]
        best = [float("inf")] * len(functions)
        for _ in range(3):  # alternate current and baseline: both see the same machine load
            for index, function in enumerate(functions):
                assert function is not None
                best[index] = min(best[index], per_call(function, repeat))
        print(f"{name:<{width}}" + "".join(f"{value:14.1f}" for value in best))


if __name__ == "__main__":
    main()
