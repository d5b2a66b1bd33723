"""Binary cache: how much faster the second node installs a release than the first builds it.

    .venv/bin/python benchmarks/binary_cache.py [--build-seconds 10] [--megabytes 64]
                                                [--files 3000] [--skip-node]

1. API level (slapos.cache.networkcache against our in-thread cache server): a synthetic
   built tree of --files files and --megabytes MB (half random, half compressible) is
   uploaded from one software root and installed into another; reports archive size,
   upload and download+install times and throughput.
2. End to end (needs root or a layout buildout may run in): our proxy with its shacache
   switched on, two nodes with different software roots. Node 1 runs `slapos node software`
   on a release whose build takes --build-seconds (a sleeping part, plus a --megabytes
   blob) and uploads it; node 2 runs the same command and installs it from the cache.

Prints a table; exits 1 if node 2 did not install from the cache or was not faster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slapos.cache.networkcache import (  # noqa: E402
    download_software_release,
    software_hash,
    upload_software_release,
)
from slapos.config import NetworkCacheConfig  # noqa: E402
from tests.fixtures.cache import make_signing, serve_cache  # noqa: E402

URL = "https://bench.example.com/software/big/software.cfg"


def synthetic_tree(root: Path, files: int, megabytes: int) -> Path:
    path = root / software_hash(URL)
    per_file = max(1, megabytes * 1024 * 1024 // files)
    for n in range(files):
        folder = path / "parts" / f"p{n % 50}"
        folder.mkdir(parents=True, exist_ok=True)
        data = (
            os.urandom(per_file)
            if n % 2
            else (b"compressible line of text\n" * (per_file // 26 + 1))[:per_file]
        )
        (folder / f"f{n}").write_bytes(data)
    (path / "bin").mkdir()
    (path / "bin" / "tool").write_text("#!/bin/sh\n")
    return path


def api_level(base: Path, files: int, megabytes: int) -> dict[str, float]:
    signing = make_signing(base / "keys")
    with serve_cache(base / "cache") as cache:
        config = NetworkCacheConfig(
            download_binary_cache_url=cache.cache_url,
            download_binary_dir_url=cache.dir_url,
            upload_binary_cache_url=cache.cache_url,
            upload_binary_dir_url=cache.dir_url,
            signature_private_key_file=str(signing.key_file),
            signature_certificate_list=signing.cert_pem,
        )
        tree = synthetic_tree(base / "node1", files, megabytes)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        upload_software_release(URL, tree, config)
        upload = time.perf_counter() - start
        archive = sum(p.stat().st_size for p in cache.content.iterdir())
        node2 = base / "node2"
        node2.mkdir()
        start = time.perf_counter()
        ok = download_software_release(URL, node2 / software_hash(URL), node2, config)
        download = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if not ok:
        raise SystemExit("API level: the second root did not install from the cache")
    return {
        "upload": upload,
        "download": download,
        "archive_mb": archive / 1e6,
        # client and in-thread server together: archives are streamed, never held in memory
        "rss_growth_mb": (rss_after - rss_before) / 1024,
    }


def _world_traversable(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def end_to_end(base: Path, build_seconds: float, megabytes: int) -> dict[str, float] | str:
    from tests.fixtures.grid import make_node, materialise_sr
    from tests.fixtures.proxy import start_proxy

    if os.geteuid() == 0 and not _world_traversable(Path(sys.prefix)):
        return "skipped: this Python is not usable by a build user (run from a readable venv)"
    signing = make_signing(base / "keys")
    cert = signing.cert_pem.strip().replace("\n", "\n  ")
    users: list[str] = []
    with contextlib.ExitStack() as stack:
        directory = base / "master"
        extra = (
            f"shacache-content-directory = {directory}/content\n"
            f"shacache-metadata-directory = {directory}/metadata\n"
        )
        master = stack.enter_context(
            contextlib.contextmanager(start_proxy)(directory, extra_config=extra)
        )
        section = (
            "\n[networkcache]\n"
            f"download-binary-cache-url = {master.url}/shacache/cache\n"
            f"download-binary-dir-url = {master.url}/shacache/dir\n"
            f"upload-binary-cache-url = {master.url}/shacache/cache\n"
            f"upload-binary-dir-url = {master.url}/shacache/dir\n"
            f"signature-private-key-file = {signing.key_file}\n"
            f"signature-certificate-list =\n  {cert}\n"
        )
        source = materialise_sr(base / "src")
        bench = source.root / "bench"
        bench.mkdir()
        (bench / "software.cfg").write_text(
            "[buildout]\nextends = ../success/software.cfg\nparts +=\n  slow\n  big\n\n"
            f"[slow]\nrecipe = srtest.recipe\nsleep = {build_seconds}\n\n"
            f"[big]\nrecipe = srtest.recipe\nsize = {megabytes * 1024 * 1024}\n"
        )
        for p in [bench, *bench.iterdir()]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        url = str(bench / "software.cfg")
        nodes = []
        try:
            for name in ("node1", "node2"):
                layout = make_node(base / name, master.url, master.computer_id, section)
                if os.geteuid() == 0:
                    user = f"bc{os.getpid() % 100000}{name[-1]}"
                    subprocess.run(
                        ["useradd", "-M", "-U", "-s", "/bin/sh", user],
                        check=True,
                        capture_output=True,
                    )
                    users.append(user)
                    shutil.chown(layout.software_root, user, user)
                nodes.append(layout)
            from slapos.slap import slap

            s = slap()
            s.initializeConnection(master.url, timeout=10)
            s.registerSupply().supply(url, computer_guid=master.computer_id)
            times = []
            outputs = []
            for layout in nodes:
                env = {
                    k: v for k, v in os.environ.items() if not k.startswith(("SLAPOS_", "PYTHON"))
                }
                env["HOME"] = str(layout.base)
                env["PYTHONPATH"] = str(REPO)
                start = time.perf_counter()
                argv = [sys.executable, "-m", "slapos", "node", "software"]
                done = subprocess.run(
                    [*argv, "--cfg", str(layout.config), "--now"],
                    capture_output=True, text=True, env=env, check=False, timeout=600,
                )  # fmt: skip
                times.append(time.perf_counter() - start)
                outputs.append(done.stderr)
                if done.returncode != 0:
                    raise SystemExit(
                        f"{layout.base.name}: node software failed:\n{done.stderr[-2000:]}"
                    )
            if "from the binary cache" not in outputs[1].replace("to the binary cache", ""):
                raise SystemExit("node2 built the release instead of installing it from the cache")
            return {"build": times[0], "install": times[1]}
        finally:
            for user in users:
                subprocess.run(["pkill", "-KILL", "-u", user], check=False, capture_output=True)
                subprocess.run(["userdel", user], check=False, capture_output=True)
                subprocess.run(["groupdel", user], check=False, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-seconds", type=float, default=10.0)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--skip-node", action="store_true", help="API level only")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bcache", dir="/tmp"))
    base.chmod(0o755)
    failed = False
    try:
        api = api_level(base / "api", args.files, args.megabytes)
        mb = args.megabytes
        print(f"API level: {args.files} files, {mb} MB tree, archive {api['archive_mb']:.1f} MB")
        for label, key in (
            ("upload (archive + sign + POST/PUT)", "upload"),
            ("download (GET + verify + extract)", "download"),
        ):
            print(f"  {label:<36} {api[key]:7.2f} s  {mb / api[key]:7.1f} MB/s")
        print(f"  peak RSS growth (client + server)    {api['rss_growth_mb']:7.1f} MB")
        if not args.skip_node:
            e2e = end_to_end(base / "e2e", args.build_seconds, args.megabytes)
            if isinstance(e2e, str):
                print(f"end to end: {e2e}")
            else:
                speedup = e2e["build"] / e2e["install"]
                what = f"{args.build_seconds:g} s build, {mb} MB blob"
                print(f"end to end (slapos node software, {what}):")
                print(f"  node1 build + upload                 {e2e['build']:7.2f} s")
                install = e2e["install"]
                label = "node2 install from the cache"
                print(f"  {label:<36} {install:7.2f} s  ({speedup:.1f}x faster)")
                failed = e2e["install"] >= e2e["build"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
