"""Exit codes are a public API: each one is documented, errors carry theirs."""

from __future__ import annotations

import re
from pathlib import Path

from slapos import errors
from slapos.errors import ExitCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "exit-codes.rst"


def test_every_exit_code_is_documented():
    documented = {int(m) for m in re.findall(r"^(\d+)\s{2,}", DOC.read_text(), re.M)}
    assert {int(code) for code in ExitCode} <= documented


def test_error_classes_carry_upstream_codes():
    assert errors.ConfigError.exit_code == 1
    assert errors.UsageError.exit_code == 2
    assert errors.NotRootError.exit_code == 5
    assert errors.UnknownCommandError.exit_code == 5
    assert errors.AlreadyRunningError.exit_code == 10
    assert errors.PromiseError.exit_code == 2
