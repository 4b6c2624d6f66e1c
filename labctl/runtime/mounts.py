"""Where a learner's --src folder and the lab's shared folders go inside a lab.

The books (d2l-zh, the d2l notebooks) read and write `../data` from their chapter folders.
A learner's --src folder is mounted whole (live and writable at every level); below it
labctl finds the book levels, the folders that hold `chapter_*` folders, at any depth, and
mounts each shared folder (the lab's data/) at `<level>/data`. Where that folder does not
exist yet, labctl makes it empty, as the learner, before the container starts, so the
engine never makes a root-owned folder in the learner's tree.

Pure: it reads the learner's folders, makes nothing and needs no engine.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

CHAPTERS = "chapter_*"  # how the books (d2l-zh, the d2l notebooks) name chapter folders
MAX_DEPTH = 6  # book levels are looked for this many folders below --src at most
MAX_FOLDERS = 5000  # and in this many folders at most: a home folder must not take minutes
SKIP = {"node_modules", "__pycache__", "venv", "site-packages"}  # never a book's own folders
VENV_MARKS = ("pyvenv.cfg", "conda-meta")  # a virtual env or conda env by any name


@dataclass(frozen=True)
class Mount:
    source: Path  # a host folder; with volume, the name of a named volume
    target: str
    read_only: bool = False
    volume: bool = False


@dataclass
class BookMounts:
    mounts: list[Mount]
    workdir: str
    make: list[Path] = field(default_factory=list)  # empty mount points in the learner's tree
    warnings: list[str] = field(default_factory=list)


def _is_chapter(name: str) -> bool:
    return fnmatch.fnmatch(name, CHAPTERS)


def _searched(entry: os.DirEntry[str], skip: set[str]) -> bool:
    """A folder the search goes into: a real one (no link: no loops, nothing outside the
    tree), not hidden, not a chapter (it holds no chapters), not a lab volume folder."""
    name = entry.name
    if name.startswith(".") or name in SKIP or _is_chapter(name) or entry.path in skip:
        return False
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def book_levels(top: Path, skip: set[Path]) -> tuple[list[Path], bool]:
    """The folders at or below ``top`` (MAX_DEPTH deep) that hold chapter folders, in
    breadth-first order; and False where the search stopped at MAX_FOLDERS folders.
    ``top`` is a resolved path and no link is followed, so the paths met are real ones."""
    skipped = {str(p) for p in skip}
    levels: list[Path] = []
    queue: deque[tuple[str, int]] = deque([(str(top), 0)])
    visited = 0
    while queue:
        folder, depth = queue.popleft()
        visited += 1
        if visited > MAX_FOLDERS:
            return levels, False
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        if any(e.name in VENV_MARKS for e in entries):
            continue  # a virtual env (or conda env) by any name: no book of the learner's
        if any(_is_chapter(e.name) and e.is_dir() for e in entries):
            levels.append(Path(folder))
        if depth < MAX_DEPTH:
            queue.extend((e.path, depth + 1) for e in entries if _searched(e, skipped))
    return levels, True


def _holds_files(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError:
        return True  # unreadable: not ours to cover


def _share(level: Path, at: str, shared: dict[str, Path], out: BookMounts,
           chapter_only: bool = False) -> None:
    """The shared folders at ``at`` (the container's path of ``level``): each one where the
    book's own SUB is missing or empty; a SUB with files in it is the book's."""
    for sub, source in shared.items():
        own = level / sub
        if own.is_dir() and own.resolve() == source.resolve():
            if not own.is_symlink():
                continue  # it is the lab's folder already (--src is the lab folder)
            # A link to it: the engine mounts at the link's target inside the container,
            # where an absolute link to the host's path would otherwise lead nowhere.
            out.mounts.append(Mount(source, posixpath.join(at, sub)))
            continue
        if own.is_dir() and _holds_files(own):
            out.warnings.append(
                f"{own} already holds files: the book uses it, not the lab's shared {sub}/"
                f" folder; to share them, move them there (mv {own}/* {source}/) and remove"
                f" the empty folder")
            continue
        if own.exists() and not own.is_dir():
            out.warnings.append(f"{own} is not a folder: the lab's shared {sub}/ folder is not"
                                f" mounted there; move it away to share {source}")
            continue
        if not chapter_only and not own.exists() and not own.is_symlink():
            if not os.access(level, os.W_OK | os.X_OK):  # the engine would make it, as root
                out.warnings.append(
                    f"you may not write to {level}: labctl cannot make {own} for the lab's"
                    f" shared {sub}/ folder, so its chapters' ../{sub} is not the lab's;"
                    f" make it yourself (mkdir {own})")
                continue
            out.make.append(own)
        out.mounts.append(Mount(source, posixpath.join(at, sub)))


def book_mounts(host: Path, dest: str, shared: dict[str, Path],
                skip: set[Path] | None = None) -> BookMounts:
    """The mounts for one --src folder such that every chapter's `../SUB` is the lab's
    shared folder for SUB (d2l: `../data` is the lab's data/), wherever the learner points
    --src: a study folder holding the books at any depth, a book's root, its `pytorch/`
    notebooks, or one chapter. ``skip``: the lab's volume folders, never searched."""
    skip = {p.resolve() for p in skip or set()} | {p.resolve() for p in shared.values()}
    if _is_chapter(host.name) and host.parent != host:  # one chapter, data beside it
        parent = posixpath.join(posixpath.dirname(dest), host.parent.name)
        out = BookMounts([Mount(host, posixpath.join(parent, host.name))],
                         posixpath.join(parent, host.name))
        _share(host.parent, parent, shared, out, chapter_only=True)
        return out
    out = BookMounts([Mount(host, dest)], dest)
    levels, complete = book_levels(host, skip)
    for level in levels:
        _share(level, posixpath.join(dest, *level.relative_to(host).parts), shared, out)
    if host not in levels:  # not a book itself: the shared folder over an empty SUB
        for sub, source in shared.items():
            inside = host / sub
            if inside.is_dir() and not _holds_files(inside) \
                    and inside.resolve() != source.resolve():
                out.mounts.append(Mount(source, posixpath.join(dest, sub)))
    if not complete:
        out.warnings.append(
            f"stopped looking for books in {host} after {MAX_FOLDERS} folders: chapters"
            f" deeper in it may not see the lab's {'/, '.join(shared)}/ as ../; point --src"
            " at the study or book folder itself")
    return out
