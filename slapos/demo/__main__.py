"""`python -m slapos.demo [DIR]`: see slapos.demo."""

from __future__ import annotations

from slapos.demo import main

raise SystemExit(main())
