"""Local software releases (paths, not URLs) follow `local_software_release_root` moves.

When the configured root differs from the one recorded in the database, stored paths under
the old root are rebased onto the new one (after a backup of the database), as upstream.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from urllib.parse import urlparse

from slapos.proxy.store import Store

log = logging.getLogger(__name__)
KEY = "local_software_release_root"


def rebase(store: Store, new_root: str, database: str | None) -> None:
    """`database`: the sqlite file to back up first (None: a server, backed up by its
    administrator)."""
    current = store.get_config(KEY) or os.sep
    if current == new_root:
        return
    store.set_config(KEY, new_root)
    relative = os.path.relpath(new_root, current)
    if not relative.startswith(os.pardir + os.sep) or os.path.basename(relative) == os.pardir:
        log.info("not rebasing local software releases: %s and %s nest", new_root, current)
        return
    if database and database != ":memory:":
        backup = f"{database}-backup-{datetime.now().isoformat(timespec='seconds')}.sql"
        log.info("backing the database up to %s before rebasing local URLs", backup)
        with open(backup, "w", encoding="utf-8") as out:
            for line in store.conn.iterdump():  # type: ignore[attr-defined]
                if line not in ("BEGIN TRANSACTION;", "COMMIT;"):
                    out.write(f"{line}\n")

    def convert(url: str | None) -> str | None:
        if not url or urlparse(url).scheme:
            return url
        rel = os.path.relpath(url, current)
        if rel.startswith(os.pardir + os.sep):
            return url
        new = os.path.join(new_root, rel)
        if not os.path.isfile(new) and os.path.isfile(url):
            return url
        return new

    log.info("rebasing local software releases from %s to %s", current, new_root)
    store.rebase_local_urls(convert)
