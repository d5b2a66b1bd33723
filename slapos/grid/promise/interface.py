"""`IPromise`, the interface plugin promises declare (`@implementer(interface.IPromise)`).

Kept under upstream's module path because releases' plugin promises import it from here.
"""

from __future__ import annotations

from zope.interface import Interface  # type: ignore[import-untyped]


class IPromise(Interface):  # type: ignore[misc]
    """A promise: `sense()` checks and logs, `test()` / `anomaly()` judge the logs."""

    def __init__(config):  # type: ignore[no-untyped-def]
        """Take the promise configuration (a dict)."""

    def sense():  # type: ignore[no-untyped-def,misc]
        """Run the check; log errors with self.logger.error."""

    def test():  # type: ignore[no-untyped-def,misc]
        """Return a TestResult."""

    def anomaly():  # type: ignore[no-untyped-def,misc]
        """Return an AnomalyResult."""
