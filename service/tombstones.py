"""Tombstones: a folder to delete is first renamed aside, atomically, in the same parent, then removed.

    data_dir/cameras/.deleted-{id}-{uuid}/   a deleted camera's folder, until removed
    data_dir/models/.deleted-{id}-{uuid}/    its models

The rename is quick and can be done under a lock: the moment it returns, the folder's name is free for a camera
added again with the same id, and no later removal of the tombstone can touch that camera's files. The removal
(slow disk work) happens after the lock is released; one a crash interrupted is finished at the next start.
Tombstone names start with a dot, which a camera id (a slug) never does.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)
PREFIX = ".deleted-"
TOMBSTONE = re.compile(r"^\.deleted-[a-z0-9][a-z0-9_-]*-[0-9a-f]+$")


def entomb(folder: Path) -> Path | None:
    """Rename `folder` to a fresh tombstone beside it; None when there is no such folder."""
    tomb = folder.with_name(f"{PREFIX}{folder.name}-{uuid.uuid4().hex}")
    try:
        os.replace(folder, tomb)
    except FileNotFoundError:
        return None
    return tomb


def remove(tombs: Iterable[Path | None]) -> None:
    for tomb in tombs:
        if tomb is not None:
            shutil.rmtree(tomb, ignore_errors=True)


def sweep(root: Path) -> None:
    """Remove the tombstones under `root` that a crash left (their deletes had ended when they were made)."""
    if not root.is_dir():
        return
    tombs = [p for p in root.iterdir() if TOMBSTONE.match(p.name) and p.is_dir()]
    for tomb in tombs:
        log.info("removing %s, left by a delete that did not finish", tomb)
    remove(tombs)
