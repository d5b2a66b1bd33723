"""The version of slapos, where upstream keeps it (``slapos.version.version``).

``slapos`` itself is a namespace package (no ``__init__.py``): recipe eggs, promise plugins and
``slapos.libnetworkcache`` all add modules under ``slapos.``, so nothing may claim the name
for itself. See docs/node-software.rst, "The slapos namespace".
"""

from __future__ import annotations

version = "0.1.0"
__version__ = version
