"""`slapos cachelookup binary-sr|url|pypi` (and the seed's `cache lookup`): what the
networkcache holds for a software release, a URL or a Python package.

Diagnostics ("Software URL: ...", "MD5: ...") go to stderr through logging, the table to
stdout (upstream logs the binary-sr table too; a table is a result, so it goes to stdout).
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from slapos.cli._common import Commands, SlapOSArgumentParser, SubParsers, add_group
from slapos.cli.context import Context

if TYPE_CHECKING:
    from slapos.config import NetworkCacheConfig

log = logging.getLogger("slapos.cli.cache")


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    _, lookup = add_group(sub, "cachelookup", help="query the networkcache")
    _, seed = add_group(sub, "cache", help="query the networkcache (seed spelling)")
    for target, words, hidden in (
        (lookup, ("cachelookup", "binary-sr"), False),
        (seed, ("cache", "lookup"), True),
    ):
        p = Commands(target, root, group="cachelookup", cfg="node").add(
            words,
            run_binary_sr,
            "perform a query to the networkcache",
            description=(
                "perform a query to the networkcache\n\n"
                "Give the URL of a software release, or its MD5 hash.\n\n"
                "Shows which OS distributions and versions have a binary of that\n"
                "release in the cache, and which of them are compatible with this\n"
                "machine."
            ),
            hidden=hidden,
        )
        p.add_argument("software_url", help="Your software url or MD5 hash")
    source = Commands(lookup, root, group="cachelookup", cfg="node")
    for word, handler, holds, positionals in (
        ("url", run_url, "a copy of a file\ndownloaded from URL", {"url": "URL to query"}),
        (
            "pypi",
            run_pypi,
            "a distribution of the\nPython package NAME at VERSION",
            {"name": "python package name", "version": "python package version"},
        ),
    ):
        p = source.add(
            ("cachelookup", word),
            handler,
            "perform a query to the networkcache.",
            description="perform a query to the networkcache.\n\n"
            f"Shows whether buildout's source cache holds {holds}.",
        )
        for name, text in positionals.items():
            p.add_argument(name, help=text)


def _networkcache(args: argparse.Namespace, ctx: Context) -> NetworkCacheConfig:
    from slapos.config import NODE_CONFIG_HINT, IniFile, NetworkCacheConfig

    path = ctx.node_config_path(getattr(args, "cfg", None))
    ini = IniFile.read(path, NODE_CONFIG_HINT)
    return NetworkCacheConfig.from_section(ini.section("networkcache", required=True))


def run_binary_sr(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.cache.lookup import lookup_binary, render_table
    from slapos.cache.platform import machine_platform
    from slapos.cache.shacache import CacheError, CacheNotFound

    config = _networkcache(args, ctx)
    try:
        found = lookup_binary(config, args.software_url, machine_platform(ctx.runner))
    except CacheNotFound:
        raise CacheError(
            f"software release not found in binary cache: {args.software_url}"
        ) from None
    except CacheError as exc:
        raise CacheError(f"problem occurred while connecting to shacache: {exc}") from exc
    if not found.rows:
        log.info("Object found in cache, but has no binary entries.")
        return 0
    log.info("Software URL: %s", found.software_url or args.software_url)
    log.info("MD5:          %s", found.md5)
    rows = [
        [
            r.multiarch,
            *[*r.os, "", "", ""][:3],
            "yes" if r.compatible else "no",
            "yes" if r.verified else "no",
        ]
        for r in found.rows
    ]
    headers = ["multiarch", "distribution", "version", "id", "compatible?", "verified?"]
    for line in render_table(headers, rows):
        print(line, file=ctx.stdout)
    return 0


def _source(args: argparse.Namespace, ctx: Context, what: str) -> int:
    from slapos.cache.lookup import lookup_pypi, lookup_url, render_table
    from slapos.cache.shacache import CacheError, CacheNotFound

    config = _networkcache(args, ctx)
    try:
        if what == "url":
            found = lookup_url(config, args.url)
        else:
            found = lookup_pypi(config, args.name, args.version)
    except CacheNotFound:
        raise CacheError("object not found in cache") from None
    except CacheError as exc:
        raise CacheError(f"problem to connect to shacache: {exc}") from exc
    if not found.rows:
        log.info("Object found in cache, but has no entry.")
        return 0
    if what == "url":
        log.info("Software source URL: %s", args.url)
    else:
        log.info("Python egg %s version %s", args.name, args.version)
    log.info("SHADIR URL: %s\n", found.shadir_url)
    headers = ["url" if what == "url" else "basename", "sha512", "signed"]
    rows = [[r.name, r.sha512, str(r.signed)] for r in found.rows]
    for line in render_table(headers, rows):
        print(line, file=ctx.stdout)
    return 0


def run_url(args: argparse.Namespace, ctx: Context) -> int:
    return _source(args, ctx, "url")


def run_pypi(args: argparse.Namespace, ctx: Context) -> int:
    return _source(args, ctx, "pypi")
