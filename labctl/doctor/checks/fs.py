"""Permission arithmetic from mode bits, for a uid that need not be the caller's.

Why not os.access: the doctor must judge "can this learner write here" for the learner,
also when the tests (or the learner, through sudo) run as root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def can(mode: int, owner: int, group: int, uid: int, gids: set[int], want: str = "rw") -> bool:
    """Whether ``uid`` (in groups ``gids``) has every right in ``want`` ('r', 'w', 'x')."""
    if uid == 0:
        return True
    bits = {"r": 4, "w": 2, "x": 1}
    if owner == uid:
        shift = 6
    elif group in gids:
        shift = 3
    else:
        shift = 0
    return all(mode >> shift & bits[c] for c in want)


def user_ids() -> tuple[int, set[int]]:
    """The caller's uid and every group it holds now."""
    return os.getuid(), {os.getgid(), *os.getgroups()}


def nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path("/")


def folder_problem(path: Path, uid: int, gids: set[int]) -> tuple[str, str] | None:
    """(what is wrong, the fix) for a folder the learner must be able to write, or None.
    A missing folder is fine when its nearest existing parent is writable: labctl
    creates it, owned by the learner."""
    chown = f"sudo chown -R $(id -u):$(id -g) {path}"
    if not path.exists():
        parent = nearest_existing(path.parent)
        st = parent.stat()
        if can(st.st_mode, st.st_uid, st.st_gid, uid, gids, "wx"):
            return None
        return (f"{path} does not exist and {parent} is not writable by you",
                f"sudo mkdir -p {path} && {chown}")
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a folder", f"move {path} away; labctl creates the folder"
    if st.st_uid == 0 and uid != 0:
        return (f"{path} is owned by root (left by a container that ran as root)", chown)
    if can(st.st_mode, st.st_uid, st.st_gid, uid, gids, "rwx"):
        return None
    return f"{path} is owned by uid {st.st_uid} and not writable by you", chown
