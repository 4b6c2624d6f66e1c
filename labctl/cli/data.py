"""Data: `labctl data list | get | import | scan`, the datasets and weights the labs'
books and tools fetch, placed where each library looks, offline-ready."""

from __future__ import annotations

from pathlib import Path

import click

from labctl.cli.common import friendly, json_option, lab_option, load
from labctl.errors import LabError


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
@json_option
@lab_option
@friendly
def get(names: tuple[str, ...], for_lab: str | None, as_json: bool, lab_dir: str | None
        ) -> None:
    """Download entries NAMES (resumable, verified, placed where the library looks)."""
    from labctl.cli import ui
    from labctl.data import catalogue, fetch, store

    if not names and not for_lab:
        raise LabError("name entries to get, or --for LAB",
                       fix="`labctl data list` shows the catalogue")
    lab = load(lab_dir)
    cat = catalogue.load(lab.root)
    wanted = _names(cat, names, for_lab)
    s = fetch.session(lab)
    done = []
    with ui.DownloadProgress() as progress:
        for name in wanted:
            e = cat.entries[name]
            root = store.volume_root(lab, name, e)
            for f in e.files:
                if store.state(root, name, f).present:
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
                       details=[f"looked for {', '.join(missing)}"],
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
    """Which entries the notebooks and scripts in FOLDER use, and which are missing."""
    from labctl.cli import ui
    from labctl.data import catalogue
    from labctl.data.scan import scan as do_scan

    lab = load(lab_dir)
    cat = catalogue.load(lab.root)
    used = do_scan(Path(folder), cat)
    rows = _rows(lab, cat, sorted(used), verify=False)
    for r in rows:
        r["used_by"] = [str(p) for p in used[r["name"]]]
    missing = [r for r in rows if r["state"] != "present"]
    unknown = any(r["size"] is None for r in missing)
    total = sum(r["size"] or 0 for r in missing)
    if as_json:
        ui.dump_json({"entries": rows, "missing": [r["name"] for r in missing],
                      "bytes_to_fetch": total, "size_unknown": unknown})
        return
    ui.table(f"{folder}: {len(rows)} entries used", ["name", "state", "size", "used by"],
             [[r["name"], r["state"], ui.human_size(r["size"]) if r["size"] else "?",
               ", ".join(r["used_by"][:3]) + (" ..." if len(r["used_by"]) > 3 else "")]
              for r in rows])
    if missing:
        more = " (and some of unknown size)" if unknown else ""
        ui.console.print(f"to fetch: {len(missing)} entries, {ui.human_size(total)}{more}:"
                         f" labctl data get {' '.join(r['name'] for r in missing)}")
