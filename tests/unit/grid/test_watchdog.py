"""The watchdog event listener: only -on-watch programs, one bang per deployment."""

from __future__ import annotations

import io
from pathlib import Path

from slapos.grid.watchdog import Watchdog


def event(process: str, group: str = "slappart0", name: str = "PROCESS_STATE_EXITED") -> str:
    payload = f"processname:{process} groupname:{group} from_state:RUNNING expected:0 pid:12"
    head = "ver:3.0 server:supervisor serial:1 pool:watchdog poolserial:1"
    return f"{head} eventname:{name} len:{len(payload)}\n{payload}"


def serve(watchdog: Watchdog, *events: str) -> str:
    out = io.StringIO()
    watchdog.serve(io.StringIO("".join(events)), out)
    return out.getvalue()


def test_bangs_once_per_deployment(tmp_path: Path) -> None:
    bangs: list[tuple[str, str]] = []
    (tmp_path / "slappart0").mkdir()
    (tmp_path / "slappart0" / ".timestamp").write_text("100")
    w = Watchdog(lambda p, m: bangs.append((p, m)), tmp_path)
    out = serve(w, event("web-on-watch"), event("web-on-watch"), event("runner"))
    assert out.count("READY\n") == 4 and out.count("RESULT 2\nOK") == 3
    assert bangs == [
        ("slappart0", "web-on-watch process in partition slappart0 encountered a problem")
    ]
    assert (tmp_path / "slappart0" / ".slapos_latest_bang_timestamp").read_text() == "100"
    (tmp_path / "slappart0" / ".timestamp").write_text("200")  # a new deployment re-arms it
    serve(w, event("web-on-watch", name="PROCESS_STATE_FATAL"))
    assert len(bangs) == 2


def test_other_events_and_failing_bang(tmp_path: Path) -> None:
    def bang(p: str, m: str) -> None:
        raise OSError("master down")

    w = Watchdog(bang, None)
    out = serve(w, event("web-on-watch", name="PROCESS_STATE_RUNNING"), event("web-on-watch"))
    # the listener acknowledges both events and keeps serving although the bang failed
    assert out.count("RESULT 2\nOK") == 2
    assert out.endswith("READY\n")
