"""`python -m slapos`."""

from __future__ import annotations

from slapos.cli.entry import console_main

if __name__ == "__main__":
    raise SystemExit(console_main())
