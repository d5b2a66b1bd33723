"""Exceptions of the slap library, under upstream's names.

Each is also one of our `slapos.errors` classes, so the CLI reports it as one line with the
documented exit code, and code written for upstream keeps catching the names it knows.
"""

from __future__ import annotations

from slapos import errors


class SlapException(errors.SlapOSError):
    """Base of every error raised by slapos.slap."""


class ResourceNotReady(SlapException, errors.NotReadyError):
    """The master accepted the request but has not allocated/processed it yet (HTTP 408)."""


class NotFoundError(SlapException, errors.NotFoundError):
    """The master does not know the object (HTTP 404), or a local lookup failed."""


class ServerError(SlapException, errors.MasterError):
    """The master failed (HTTP 5xx) or answered something that is not a valid document."""


class ConnectionError(SlapException, errors.MasterError):
    """The master could not be reached (refused, DNS, timeout, TLS handshake)."""


class HTTPError(SlapException, errors.MasterError):
    """Any other HTTP error status (400, 405, 410...). Carries `status` and `body`."""

    def __init__(self, message: str, status: int = 0, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class AuthenticationError(HTTPError):
    """The master refused our credentials (HTTP 401/403)."""


__all__ = [
    "AuthenticationError",
    "ConnectionError",
    "HTTPError",
    "NotFoundError",
    "ResourceNotReady",
    "ServerError",
    "SlapException",
]
