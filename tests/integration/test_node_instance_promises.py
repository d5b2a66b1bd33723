"""Plugin promises (etc/plugin/*.py on GenericPromise) run in their own process, as
releases write them for upstream (zope.interface + slapos.grid.promise imports)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from slapos.errors import PromiseError
from slapos.grid.promise import PromiseRun, check, run_promises
from slapos.system import SubprocessRunner

PLUGIN = """\
from zope.interface import implementer
from slapos.grid.promise import interface
from slapos.grid.promise.generic import GenericPromise

extra_config_dict = {"wanted": %(wanted)r}


@implementer(interface.IPromise)
class RunPromise(GenericPromise):
    def __init__(self, config):
        super().__init__(config)
        self.setPeriodicity(minute=5)

    def sense(self):
        import os
        if os.path.exists(os.path.join(self.getPartitionFolder(), self.getConfig("wanted"))):
            self.logger.info("found it")
        else:
            self.logger.error("%%s is missing" %% self.getConfig("wanted"))

    def anomaly(self):
        return self._anomaly(result_count=2, failure_amount=2)
"""


@pytest.fixture
def partition_dir() -> Iterator[Path]:
    """A partition directory under /tmp, owned by a user made for the test when root."""
    base = Path(tempfile.mkdtemp(prefix="slpr", dir="/tmp"))
    base.chmod(0o750)
    user = None
    try:
        if os.geteuid() == 0:
            user = f"slpr{os.getpid() % 100000}"
            subprocess.run(["useradd", "-M", "-U", "-d", str(base), user], check=True)
            shutil.chown(base, user, user)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if user:
            subprocess.run(["userdel", user], check=False, capture_output=True)
            subprocess.run(["groupdel", user], check=False, capture_output=True)


def partition(base: Path, **plugins: str) -> Path:
    folder = base / "etc" / "plugin"
    folder.mkdir(parents=True)
    for name, text in plugins.items():
        (folder / f"{name}.py").write_text(text)
    if os.geteuid() == 0:
        owner = base.stat()
        for p in [base / "etc", folder, *folder.iterdir()]:
            os.chown(p, owner.st_uid, owner.st_gid)
    return base


def test_plugin_promise_test_and_anomaly(partition_dir: Path) -> None:
    part = partition(partition_dir, **{"check-file": PLUGIN % {"wanted": "ready"}})
    run = PromiseRun(part, "slappart0", 30, {"PATH": "/usr/bin:/bin"})
    with pytest.raises(
        PromiseError, match=r"Promise 'check-file\.py' failed with output: ready is missing"
    ):
        check(run, SubprocessRunner())
    saved = json.loads((part / ".slapgrid/promise/result/check-file.status.json").read_text())
    assert saved["result"]["failed"] is True and saved["name"] == "check-file.py"
    assert " - ERROR - " in (part / ".slapgrid/promise/log/check-file.log").read_text()
    cache = json.loads((part / ".slapgrid/promise/cache/check-file").read_text())
    assert cache["periodicity"] == 5

    (part / "ready").write_text("")  # readable by the partition user
    [ok] = check(run, SubprocessRunner())
    assert not ok.failed and ok.message == "found it"

    # anomaly mode: this plugin wants 2 failures among its last 2 runs
    (part / "ready").unlink()
    anomaly = PromiseRun(part, "slappart0", 30, {"PATH": "/usr/bin:/bin"}, anomaly=True)
    first = run_promises(anomaly, SubprocessRunner())[0]
    assert not first.failed and not first.bang
    second = run_promises(anomaly, SubprocessRunner())[0]
    assert second.failed and second.bang  # the engine bangs the master for it


def test_broken_plugins(partition_dir: Path) -> None:
    part = partition(
        partition_dir,
        a_noclass="x = 1\n",
        b_hang=textwrap.dedent(
            """\
            import time
            from slapos.grid.promise.generic import GenericPromise
            class RunPromise(GenericPromise):
                def sense(self):
                    time.sleep(60)
            """
        ),
    )
    results = run_promises(PromiseRun(part, "slappart0", 2, {}), SubprocessRunner())
    by_name = {r.name: r for r in results}
    assert "defines no RunPromise" in by_name["a_noclass.py"].message
    assert by_name["b_hang.py"].message == "Error: Promise timed out after 2 seconds"
    assert all(r.failed for r in results)
