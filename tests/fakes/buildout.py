"""`fake_buildout`: a FakeRunner answer that acts as zc.buildout does on the file system."""

from __future__ import annotations

from tests.fakes.runner import Call


def fake_buildout(call: Call) -> tuple[int, str]:
    """Bootstrap makes bin/buildout; any other run installs the parts `hello` and `world`."""
    argv, cwd = call.argv, call.cwd
    assert cwd is not None, "buildout runs in its directory"
    if argv[-1] == "bootstrap" or ("-c" in argv and "bootstrap" in argv[-1]):
        (cwd / "bin").mkdir(exist_ok=True)
        (cwd / "bin" / "buildout").write_text("#!/usr/bin/python3 -S\nimport zc.buildout\n")
        return 0, f"Generated script '{cwd}/bin/buildout'.\n"
    (cwd / "parts").mkdir(exist_ok=True)
    return 0, "Installing hello.\nInstalling world.\n"
