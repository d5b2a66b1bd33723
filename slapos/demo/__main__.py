"""`python -m slapos.demo [DIR]`: see slapos.demo."""

from __future__ import annotations

from slapos.demo.cli import main

raise SystemExit(main())
