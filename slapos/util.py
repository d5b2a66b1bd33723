"""Compatibility helpers under slapos.core's `slapos.util` names.

Recipes, promises and tools written for upstream import a few helpers from `slapos.util`
(`dumps`, `loads`, `xml2dict`, `dict2xml`, `bytes2str`, `mkdir_p`, ...). New code should use
`slapos.slap.wire` directly.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from slapos.slap.wire import dict_to_instance_xml as dict2xml
from slapos.slap.wire import dumps as _dumps
from slapos.slap.wire import instance_xml_to_dict as xml2dict
from slapos.slap.wire import loads

__all__ = [
    "bytes2str",
    "chownDirectory",
    "dict2xml",
    "dumps",
    "loads",
    "mkdir_p",
    "str2bytes",
    "string_to_boolean",
    "unicode2str",
    "xml2dict",
]


def dumps(value: Any) -> bytes:
    """Marshal `value`; bytes, as upstream returns."""
    return _dumps(value).encode("ascii")


def bytes2str(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def str2bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def unicode2str(value: Any) -> Any:
    """Identity on Python 3 (kept for code that still calls it)."""
    return value


def mkdir_p(path: str, mode: int = 0o700) -> None:
    """Create `path` and its parents; no error if it exists as a directory."""
    try:
        os.makedirs(path, mode)
    except OSError as exc:
        if not (exc.errno == errno.EEXIST and os.path.isdir(path)):
            raise


def chownDirectory(path: str, uid: int, gid: int) -> None:
    """chown `path` and everything below it (symbolic links themselves, not targets)."""
    os.lchown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def string_to_boolean(value: str) -> bool:
    """'true'/'false' (any case) -> bool; anything else is a ValueError, as upstream."""
    lowered = str(value).strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError(f"{value!r} is neither True nor False.")
