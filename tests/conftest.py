"""Suite-wide rules.

* Every test runs with HOME in its own tmp_path and no SLAPOS_* variable, and fails if it
  leaves os.environ changed.
* Tests under tests/integration/ are marked `integration`; every other test is a unit test
  and gets a 30 s timeout.
* `@pytest.mark.root` tests skip unless run as root.
* A test that uses slapos.core 1.26.1 (the `upstream` fixture, directly or through another
  fixture, or a parameter naming it: `any_proxy[upstream]`, `master[upstream_proxy]`) is
  marked `upstream` (`-m "not upstream"` leaves them out); a test that asks for it
  otherwise (`request.getfixturevalue`) carries the mark itself.
* `./dev.sh test` runs the suite in parallel (pytest-xdist, `--dist loadgroup`): session
  fixtures are then per worker, and tests that must run in one worker (a build they share,
  a machine-wide name or port) carry `pytest.mark.xdist_group(name)`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fakes.master",
    "tests.fixtures.upstream",
    "tests.fixtures.proxy",
    "tests.fixtures.postgres",
    "tests.fixtures.grid",
    "tests.fixtures.grid_instance",
    "tests.fixtures.browser",
    "tests.fixtures.corpus",
]

ROOT = Path(__file__).resolve().parent
#: seconds; integration tests keep setup.cfg's longer timeout
UNIT_TIMEOUT = 30


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if ROOT / "integration" in path.parents:
            item.add_marker(pytest.mark.integration)
        elif not item.get_closest_marker("timeout"):
            # a unit test that needs more than this is an integration test in disguise
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))
        if _uses_upstream(item):
            item.add_marker(pytest.mark.upstream)
        if item.get_closest_marker("root") and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """In a worker of `--dist loadgroup`, every grouped test must carry its group (xdist
    marks it in the node id): a pytest/xdist pair that loses it would spread a group over
    workers silently (pytest-dev/pytest-xdist#1386)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if lost:
        raise pytest.UsageError(f"xdist_group marks not applied (this pytest-xdist): {lost[0]}")


def _uses_upstream(item: pytest.Item) -> bool:
    if "upstream" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(map(_names_upstream, callspec.params.values()))


def _names_upstream(value: object) -> bool:
    if isinstance(value, tuple):
        return any(map(_names_upstream, value))
    return isinstance(value, str) and value.split("_")[0] == "upstream"


@pytest.fixture(autouse=True)
def environ_guard():
    """Fails a test that leaves os.environ changed (monkeypatch has restored its own)."""
    before = _environ()
    yield
    assert _environ() == before, "test changed os.environ without monkeypatch"


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def isolate(environ_guard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key in list(os.environ):
        if key.startswith("SLAPOS_") and key not in ("SLAPOS_UPSTREAM_VENV",):
            monkeypatch.delenv(key)
