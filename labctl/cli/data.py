"""Data: `labctl data list | get | import | scan`, the datasets and weights the labs'
books and tools fetch, placed where each library looks, offline-ready."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from labctl.cli.common import friendly, json_option, lab_option, load
from labctl.errors import LabError

if TYPE_CHECKING:  # the commands import their modules when they run: --help stays fast
    from labctl.config.lab import Lab
    from labctl.data.catalogue import Catalogue
    from labctl.data.scan import Report


@click.group()
def data() -> None:
    """Datasets and weights: what is here, fetch them, import them, find them in notebooks."""


def _rows(lab, cat, names, verify: bool) -> list[dict]:  # noqa: ANN001
    from labctl.data import store

    rows = []
    for name in names:
        e = cat.entries[name]
        root = store.volume_root(lab, name, e)
        states = [store.state(root, name, f, verify=verify) for f in e.files]
        done = sum(s.present for s in states)
        status = ("present" if done == len(states) else "corrupt" if any(s.problem for s in states)
                  else "unverified" if any(s.unverified for s in states)
                  else "partial" if done or any(s.size for s in states) else "missing")
        rows.append({"name": name, "description": e.description, "labs": e.labs,
                     "volume": e.volume, "size": e.size, "state": status,
                     "files": [{"path": str(s.path), "present": s.present, "bytes": s.size,
                                "problem": s.problem} for s in states]})
    return rows


def _names(cat, names: tuple[str, ...], for_lab: str | None) -> list[str]:  # noqa: ANN001
    import difflib

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


@data.command("list")
@click.argument("names", nargs=-1)
@click.option("--for", "for_lab", metavar="LAB", help="Only the entries of this lab (spec).")
@click.option("--verify", is_flag=True, help="Check every checksum (reads every file).")
@json_option
@lab_option
@friendly
def list_(names: tuple[str, ...], for_lab: str | None, verify: bool, as_json: bool,
          lab_dir: str | None) -> None:
    """The catalogue: each entry, its size, and whether it is in this lab."""
    from labctl.cli import ui
    from labctl.data import catalogue

    lab = load(lab_dir)
    cat = catalogue.load(lab.root)
    rows = _rows(lab, cat, _names(cat, names, for_lab), verify)
    if not names and not for_lab:  # + the Hugging Face repositories in the shared cache
        from labctl.data import hf

        rows += [{"name": c.name, "description": f"Hugging Face ({', '.join(c.revisions)};"
                  f" {c.files} files)", "labs": [], "volume": "cache", "size": c.size,
                  "state": "present", "files": [{"path": str(c.path), "present": True,
                                                 "bytes": c.size, "problem": ""}]}
                 for c in hf.cached(lab)]
    if as_json:
        ui.dump_json(rows)
        return
    ui.table(f"datasets and weights ({len(rows)})", ["name", "state", "size", "labs",
                                                     "description"],
             [[r["name"], r["state"], ui.human_size(r["size"]) if r["size"] else "?",
               ",".join(r["labs"]), r["description"]] for r in rows])


@data.command()
@click.argument("names", nargs=-1)
@click.option("--for", "for_lab", metavar="LAB", help="Every entry of this lab (spec).")
@click.option("--include", multiple=True, metavar="PATTERN",
              help="hf: repositories: only the files matching PATTERN (repeatable).")
@json_option
@lab_option
@friendly
def get(names: tuple[str, ...], for_lab: str | None, include: tuple[str, ...], as_json: bool,
        lab_dir: str | None) -> None:
    """Download entries NAMES (resumable, verified, placed where the library looks), or
    Hugging Face repositories hf:ORG/NAME[@REVISION] into the shared HF cache."""
    from labctl.cli import ui
    from labctl.data import catalogue, fetch, hf, store

    if not names and not for_lab:
        raise LabError("name entries to get, or --for LAB",
                       id="cli.nothing-to-get", fix="`labctl data list` shows the catalogue")
    lab = load(lab_dir)
    if any(hf.is_ref(n) for n in names):  # Hugging Face repositories: huggingface_hub's cache
        refs = [hf.parse_ref(n) for n in names if hf.is_ref(n)]
        got = [hf.download(lab, r, list(include), say=ui.err_console.print,
                           progress=not as_json) for r in refs]
        if as_json:
            ui.dump_json([{"name": g.ref.name, "commit": g.commit, "endpoint": g.endpoint,
                           "path": str(g.folder), "files": g.files, "bytes": g.bytes} for g in got])
        for g in [] if as_json else got:
            ui.console.print(f"{g.ref.name}: present, {len(g.files)} files,"
                             f" {ui.human_size(g.bytes)} ({lab.rel(g.folder)})")
        names = tuple(n for n in names if not hf.is_ref(n))
        if not names and not for_lab:
            return
    cat = catalogue.load(lab.root)
    wanted = _names(cat, names, for_lab)
    s = fetch.session(lab)
    done = []
    with ui.DownloadProgress() as progress:
        for name in wanted:
            e = cat.entries[name]
            root = store.volume_root(lab, name, e)
            for f in e.files:
                if store.ready(root, name, f):  # placed by labctl, or checked now
                    continue
                fetch.fetch_file(lab, name, e, f, progress=progress.update, s=s)
            done.append(name)
    rows = _rows(lab, cat, done, verify=False)
    if as_json:
        ui.dump_json(rows)
    else:
        for r in rows:
            where = ", ".join(f["path"] for f in r["files"])
            ui.console.print(f"{r['name']}: {r['state']} ({where})")


@data.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True))
@json_option
@lab_option
@friendly
def import_(name: str, path: str, as_json: bool, lab_dir: str | None) -> None:
    """Put a file (or a folder of files) fetched another way where NAME's library looks."""
    from labctl.cli import ui
    from labctl.data import catalogue, store

    lab = load(lab_dir)
    cat = catalogue.load(lab.root)
    _names(cat, (name,), None)
    e = cat.entries[name]
    root = store.volume_root(lab, name, e)
    src = Path(path)
    missing, placed = [], []
    for f in e.files:
        if src.is_file():
            found = src if len(e.files) == 1 or src.name == f.name else None
        else:
            found = next((p for p in sorted(src.rglob(f.name)) if p.is_file()), None)
        if found is None:
            missing.append(f.name)
            continue
        placed.append(str(store.place(root, name, f, found, move=False)))
    if missing and not placed:
        raise LabError(f"{path} holds none of the files of {name}",
                       id="cli.no-matching-files", details=[f"looked for {', '.join(missing)}"],
                       fix="name the downloaded file, or the folder that holds it")
    if as_json:
        ui.dump_json({"name": name, "placed": placed, "missing": missing})
        return
    for p in placed:
        ui.console.print(f"placed {p}")
    if missing:
        ui.err_console.print(f"warning: {name} still lacks {', '.join(missing)}")


@data.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@json_option
@lab_option
@friendly
def scan(folder: str, as_json: bool, lab_dir: str | None) -> None:
    """What the notebooks and scripts in FOLDER download: catalogue entries (and which are
    missing), calls no entry covers (with a datasets.yaml skeleton), Hugging Face repos."""
    from labctl.cli import ui
    from labctl.data import catalogue
    from labctl.data.scan import survey

    lab = load(lab_dir)
    cat = catalogue.load(lab.root)
    report = survey(Path(folder), cat)
    doc = _scan_doc(lab, cat, report)
    if as_json:
        ui.dump_json(doc)
        return
    _print_scan(folder, report, doc)


def _scan_doc(lab: Lab, cat: Catalogue, report: Report) -> dict[str, Any]:
    """`data scan --json`: the entries used and their state, what fetching the missing
    ones downloads, the calls, those no entry covers (with a skeleton), HF repositories."""
    from labctl.data.scan import skeleton

    used = report.used
    rows = _rows(lab, cat, sorted(used), verify=False)
    for r in rows:
        r["used_by"] = [str(p) for p in used[r["name"]]]
    missing = [r for r in rows if r["state"] != "present"]
    # what a `labctl data get` of the missing entries downloads: the files not there yet
    total, unknown = 0, []
    for r in missing:
        sizes = [f.size for f, st in zip(cat.entries[r["name"]].files, r["files"], strict=True)
                 if not st["present"]]
        total += sum(s or 0 for s in sizes)
        if any(s is None for s in sizes):
            unknown.append(r["name"])
    return {
        "entries": rows, "missing": [r["name"] for r in missing], "bytes_to_fetch": total,
        "size_unknown": unknown,
        "calls": [{"kind": c.kind, "key": c.key, "call": c.code, "file": str(c.file),
                   "line": c.line, "cell": c.cell, "entry": c.entry} for c in report.calls],
        "unknown": [{"kind": c.kind, "key": c.key, "call": c.code, "where": c.where,
                     "skeleton": skeleton(c)} for c in report.unknown],
        "huggingface": {repo: [c.where for c in cs] for repo, cs in report.hf_repos.items()},
        "skipped": [{"file": str(s.file), "reason": s.reason} for s in report.skipped]}


def _print_scan(folder: str, report: Report, doc: dict[str, Any]) -> None:
    """`data scan` for people: a table of the entries, then what to fetch, what no entry
    covers and the Hugging Face repositories."""
    from labctl.cli import ui
    from labctl.data.scan import printable

    say = ui.console.print
    rows, missing, unknown = doc["entries"], doc["missing"], doc["size_unknown"]
    total, new, hf = doc["bytes_to_fetch"], doc["unknown"], doc["huggingface"]
    for s in report.skipped:
        ui.err_console.print(f"skipped {printable(str(s.file))}: {s.reason}")
    ui.table(f"{printable(folder)}: {len(rows)} entries used", ["name", "state", "size",
                                                                 "used by"],
             [[r["name"], r["state"], f"{r['size']:,} B" if r["size"] is not None
               else "unknown", ", ".join(printable(p) for p in r["used_by"][:3])
               + (" ..." if len(r["used_by"]) > 3 else "")] for r in rows])
    if missing:
        more = (f" + {len(unknown)} of unknown size ({', '.join(unknown)})" if unknown
                else "")
        say(f"to fetch: {len(missing)} entries, {total:,} B ({ui.human_size(total)}){more}:"
            f" labctl data get {' '.join(missing)}")
    if new:
        say(f"\n{len(new)} download(s) no catalogue entry covers; labctl cannot fetch them"
            " ahead. Add an entry to datasets.yaml in the lab folder (fill in FILL-IN):")
        for c in report.unknown:
            others = sum(1 for o in report.calls if (o.kind, o.key) == (c.kind, c.key)) - 1
            say(f"  {printable(c.where)}: {c.code}" + (f" (and {others} more)" if others
                                                        else ""))
        say("entries:\n" + "\n".join(n["skeleton"] for n in new))
    if hf:
        say(f"\nHugging Face repositories ({len(hf)}; not catalogue entries: they go into"
            " the cache volume's huggingface/ (HF_HOME), e.g. `huggingface-cli download"
            " REPO` in the lab):")
        for repo, where in hf.items():
            say(f"  {printable(repo)}  ({printable(where[0])}"
                + (f" and {len(where) - 1} more)" if len(where) > 1 else ")"))


@data.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before removing.")
@json_option
@lab_option
@friendly
def rm(name: str, yes: bool, as_json: bool, lab_dir: str | None) -> None:
    """Remove the files of entry NAME (and what labctl unpacked from them), asking first."""
    import sys

    from labctl.cli import ui
    from labctl.data import catalogue, store
    from labctl.image import disk

    lab = load(lab_dir)
    cat = catalogue.load(lab.root)
    _names(cat, (name,), None)
    e = cat.entries[name]
    root = store.volume_root(lab, name, e)
    # its partial downloads and labctl's records of it: folders of this entry's own
    extra = [p for f in e.files for p in (store.partial_path(root, name, f).parent,
                                          store.record_path(root, name, f).parent)]
    paths = disk.entry_paths(root, cat, name, extra)
    sizes = [disk.folder_size(p) for p in paths]
    if not paths:
        if as_json:
            ui.dump_json({"name": name, "removed": [], "freed": 0})
        else:
            ui.err_console.print(f"{name}: none of its files are here")
        return
    out = ui.err_console if as_json else ui.console
    for p, size in zip(paths, sizes, strict=True):
        out.print(f"  {lab.rel(p)}  {disk.human(size)}")
    if not yes:
        if not sys.stdin.isatty():
            raise LabError(f"`data rm` asks before removing {name}'s files, and there is no"
                           " terminal to ask on",
                           id="cli.no-terminal", fix=f"labctl data rm {name} --yes")
        click.confirm(f"remove these {len(paths)} paths ({disk.human(sum(sizes))})?",
                      abort=True, err=True)
    freed = disk.remove_paths(paths)
    if as_json:
        ui.dump_json({"name": name, "removed": [str(p) for p in paths], "freed": freed})
    else:
        out.print(f"removed {name}: {disk.human(freed)} freed")
