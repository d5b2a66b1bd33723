"""slapos.slap: the SLAP protocol library (upstream-compatible public API).

    from slapos.slap import slap
    s = slap()
    s.initializeConnection("http://127.0.0.1:8080", key_file, cert_file)
    computer = s.registerComputer("COMP-123")

Importing this package is cheap: no lxml, xml_marshaller or requests (see transport.py).
"""

from __future__ import annotations

from slapos.slap.entry import OpenOrder, SoftwareProductCollection, Supply, Token, slap
from slapos.slap.slap import (
    AuthenticationError,
    Computer,
    ComputerPartition,
    ConnectionError,
    HTTPError,
    NotFoundError,
    ResourceNotReady,
    ServerError,
    SlapException,
    SoftwareInstance,
    SoftwareRelease,
)

__all__ = [
    "AuthenticationError",
    "Computer",
    "ComputerPartition",
    "ConnectionError",
    "HTTPError",
    "NotFoundError",
    "OpenOrder",
    "ResourceNotReady",
    "ServerError",
    "SlapException",
    "SoftwareInstance",
    "SoftwareProductCollection",
    "SoftwareRelease",
    "Supply",
    "Token",
    "slap",
]
