"""What each `labctl data` command finds and does, as typed results: the command prints
them as a table or dumps their as_dict() for --json, and decides nothing itself.

An entry's state (present, corrupt, unverified, partial, missing) is decided here, once,
for `data list`, `data get` and `data scan` alike. This module sits above data.fetch,
data.scan, data.hf and image.disk (it puts them together for the commands), and none of
them imports it."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.config.lab import Lab
from labctl.data import catalogue, fetch, hf, store
from labctl.data.catalogue import Catalogue
from labctl.data.scan import Report, skeleton, survey
from labctl.errors import LabError
from labctl.image import disk


@dataclass(frozen=True)
class FileRow:
    """One file of an entry, as the listings show it."""

    path: str
    present: bool
    bytes: int
    problem: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "present": self.present, "bytes": self.bytes,
                "problem": self.problem}


@dataclass
class EntryState:
    """A catalogue entry (or a Hugging Face repository in the cache) and whether it is
    in this lab; ``used_by``: the files that use it, for `data scan` only."""

    name: str
    description: str
    labs: list[str]
    volume: str
    size: int | None
    state: str  # present | corrupt | unverified | partial | missing
    files: list[FileRow]
    used_by: list[str] | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name, "description": self.description, "labs": self.labs,
            "volume": self.volume, "size": self.size, "state": self.state,
            "files": [f.as_dict() for f in self.files]}
        if self.used_by is not None:
            out["used_by"] = self.used_by
        return out


def select(cat: Catalogue, names: Sequence[str], for_lab: str | None) -> list[str]:
    """The entries a command works on: those of lab ``for_lab``, else ``names`` (every
    entry when none), an unknown name refused with the names close to it."""
    if for_lab:
        return [n for n, e in cat.entries.items() if for_lab in e.labs]
    unknown = [n for n in names if n not in cat.entries]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(cat.entries), n=3)
        raise LabError(f"no catalogue entry named {unknown[0]!r}",
                       id="cli.no-catalogue-entry",
                       fix=(f"did you mean {', '.join(close)}? " if close else "")
                       + "`labctl data list` shows them all")
    return list(names) or list(cat.entries)


def _state(states: list[store.FileState]) -> str:
    """One word for the entry: present only when every file is; a file that is there
    but fails its checks makes it corrupt, before anything else."""
    done = sum(s.present for s in states)
    if done == len(states):
        return "present"
    if any(s.problem for s in states):
        return "corrupt"
    if any(s.unverified for s in states):
        return "unverified"
    return "partial" if done or any(s.size for s in states) else "missing"


def states(lab: Lab, cat: Catalogue, names: Sequence[str], *, verify: bool = False
           ) -> list[EntryState]:
    """Each entry's state in this lab; ``verify`` reads every file for its checksum."""
    out = []
    for name in names:
        e = cat.entries[name]
        root = store.volume_root(lab, name, e)
        found = [store.state(root, name, f, verify=verify) for f in e.files]
        out.append(EntryState(name, e.description, e.labs, e.volume, e.size, _state(found),
                              [FileRow(str(s.path), s.present, s.size, s.problem)
                               for s in found]))
    return out


def _cached(c: hf.Cached) -> EntryState:
    return EntryState(c.name, f"Hugging Face ({', '.join(c.revisions)}; {c.files} files)",
                      [], "cache", c.size, "present", [FileRow(str(c.path), True, c.size)])


def listing(lab: Lab, names: Sequence[str], for_lab: str | None, *, verify: bool = False
            ) -> list[EntryState]:
    """`data list`: the entries asked for; when none were named, every entry and the
    Hugging Face repositories in the shared cache too."""
    cat = catalogue.load(lab.root)
    rows = states(lab, cat, select(cat, names, for_lab), verify=verify)
    if not names and not for_lab:
        rows += [_cached(c) for c in hf.cached(lab)]
    return rows


def get(lab: Lab, names: Sequence[str], for_lab: str | None,
        bar: Callable[[], AbstractContextManager[fetch.Bar]]) -> list[EntryState]:
    """`data get` of catalogue entries: fetch what is not in place, then their states."""
    cat = catalogue.load(lab.root)
    done = fetch.fetch_entries(lab, cat, select(cat, names, for_lab), bar)
    return states(lab, cat, done)


def import_files(lab: Lab, name: str, source: str) -> store.Imported:
    """`data import NAME SOURCE`: the entry's files found in SOURCE, put in place."""
    cat = catalogue.load(lab.root)
    select(cat, (name,), None)
    e = cat.entries[name]
    return store.import_files(store.volume_root(lab, name, e), name, e, source)


# --- `data scan` ---------------------------------------------------------------------------
@dataclass
class ScanReport:
    """`data scan`: the entries a folder's code uses and their state, what fetching the
    missing ones downloads, and the survey (calls, those no entry covers, HF repos)."""

    folder: str
    survey: Report
    entries: list[EntryState]
    bytes_to_fetch: int  # the files of the missing entries not there yet, sized ones
    size_unknown: list[str]  # missing entries with a file of no declared size

    @property
    def missing(self) -> list[str]:
        return [r.name for r in self.entries if r.state != "present"]

    @property
    def skeletons(self) -> list[str]:
        """A datasets.yaml entry to fill in for each call no entry covers."""
        return [skeleton(c) for c in self.survey.unknown]

    @property
    def huggingface(self) -> dict[str, list[str]]:
        """Each Hugging Face repository used, and where."""
        return {repo: [c.where for c in cs] for repo, cs in self.survey.hf_repos.items()}

    def as_dict(self) -> dict[str, Any]:
        s = self.survey
        return {
            "entries": [r.as_dict() for r in self.entries], "missing": self.missing,
            "bytes_to_fetch": self.bytes_to_fetch, "size_unknown": self.size_unknown,
            "calls": [{"kind": c.kind, "key": c.key, "call": c.code, "file": str(c.file),
                       "line": c.line, "cell": c.cell, "entry": c.entry} for c in s.calls],
            "unknown": [{"kind": c.kind, "key": c.key, "call": c.code, "where": c.where,
                         "skeleton": k} for c, k in zip(s.unknown, self.skeletons, strict=True)],
            "huggingface": self.huggingface,
            "skipped": [{"file": str(k.file), "reason": k.reason} for k in s.skipped]}


def scan(lab: Lab, folder: str) -> ScanReport:
    """What the notebooks and scripts in ``folder`` download, against this lab."""
    cat = catalogue.load(lab.root)
    found = survey(Path(folder), cat)
    used = found.used
    rows = states(lab, cat, sorted(used))
    for r in rows:
        r.used_by = [str(p) for p in used[r.name]]
    total, unknown = 0, []
    for r in rows:
        if r.state == "present":
            continue
        sizes = [f.size for f, st in zip(cat.entries[r.name].files, r.files, strict=True)
                 if not st.present]
        total += sum(s or 0 for s in sizes)
        if any(s is None for s in sizes):
            unknown.append(r.name)
    return ScanReport(folder, found, rows, total, unknown)


# --- `data rm` -------------------------------------------------------------------------------
@dataclass
class Removed:
    name: str
    removed: list[Path] = field(default_factory=list)
    freed: int = 0  # bytes

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "removed": [str(p) for p in self.removed],
                "freed": self.freed}


@dataclass
class Removal:
    """What `data rm NAME` would remove, each path with its size; apply() removes it."""

    name: str
    paths: list[Path]
    sizes: list[int]

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def apply(self) -> Removed:
        return Removed(self.name, self.paths, disk.remove_paths(self.paths))


def removal(lab: Lab, name: str) -> Removal:
    """The entry's files, what labctl unpacked from them, its partial downloads and
    labctl's records of it (folders of this entry's own), as they are now."""
    cat = catalogue.load(lab.root)
    select(cat, (name,), None)
    e = cat.entries[name]
    root = store.volume_root(lab, name, e)
    extra = [p for f in e.files for p in (store.partial_path(root, name, f).parent,
                                          store.record_path(root, name, f).parent)]
    paths = disk.entry_paths(root, cat, name, extra)
    return Removal(name, paths, [disk.folder_size(p) for p in paths])
