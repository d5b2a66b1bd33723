"""slapos: deploy and run services on your own fleet of machines."""

from __future__ import annotations

__version__ = "0.1.0"
