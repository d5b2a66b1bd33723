"""Run one plugin promise: `python -m slapos.grid.promise.plugin CONFIG_JSON`.

The node starts this as the partition's owner, in the partition, with a timeout. It imports
the plugin file (its directory first on sys.path, as upstream), runs `sense()` and then
`test()` or, with `check-anomaly`, `anomaly()`, and prints one JSON line:
`{"failed", "message", "periodicity", "tested", "anomaly", "skipped"}`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import sys
from typing import Any

RESULT_MARK = "SLAPOS-PROMISE-RESULT "


def run(config: dict[str, Any]) -> dict[str, Any]:
    path = config["path"]
    folder = os.path.dirname(path)
    init = os.path.join(folder, "__init__.py")
    if not os.path.exists(init):
        with contextlib.suppress(OSError):
            with open(init, "w"):
                pass
            os.chmod(init, 0o644)
    sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return {"failed": True, "message": f"cannot load promise {path}"}
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    promise_class = getattr(module, "RunPromise", None)
    if promise_class is None:
        return {"failed": True, "message": f"{path} defines no RunPromise class"}
    extra = getattr(module, "extra_config_dict", None) or {}
    anomaly = bool(config.pop("check-anomaly", False))
    clash = set(extra) & set(config)
    if clash:
        return {"failed": True, "message": f"extra_config_dict redefines {sorted(clash)}"}
    # A plugin built on slapos.core's own GenericPromise (a release's plugin that imports
    # it from its eggs, as slapos.toolbox's do) refuses a configuration without the queue
    # upstream's launcher passes; ours ignores it. Results are read from the return values.
    promise = promise_class({**config, **extra, "queue": queue.Queue()})
    tested, detected = promise.isTested(), promise.isAnomalyDetected()
    base = {"periodicity": promise.getPeriodicity(), "tested": tested, "anomaly": detected}
    if not tested and not detected:
        message = "It's not allowed to disable both Test and Anomaly in promise!"
        return {**base, "failed": True, "message": message}
    if (anomaly and not detected) or (not anomaly and not tested):
        return {**base, "failed": False, "message": "", "skipped": True}
    try:
        promise.sense()
    except Exception as exc:
        promise.logger.error(str(exc))
    try:
        result = promise.anomaly() if anomaly else promise.test()
        if result is None:
            raise ValueError("Promise returned 'None'")
    except Exception as exc:
        return {**base, "failed": True, "message": str(exc)}
    return {
        **base,
        "failed": bool(result.hasFailed()),
        "message": str(result.message or ""),
        "bang": bang_allowed(promise),
    }


def bang_allowed(promise: Any) -> bool:
    """Whether a failed anomaly may bang: ours says it; slapos.core's keeps it private."""
    method = getattr(promise, "bangAllowed", None)
    if method is not None:
        return bool(method())
    return bool(getattr(promise, "_GenericPromise__allow_bang", True))


def main() -> int:
    config = json.loads(sys.argv[1])
    result = run(config)
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
