"""Data: `labctl data list | get | import | scan | rm`, the datasets and weights the labs'
books and tools fetch, placed where each library looks, offline-ready. The work and its
decisions are labctl.data.report's; these commands print its results."""

from __future__ import annotations

import sys

import click

from labctl.cli import ui
from labctl.cli.common import friendly, json_option, lab_option, load
from labctl.config.lab import Lab
from labctl.data import hf, report
from labctl.data.scan import printable
from labctl.errors import LabError
from labctl.image.disk import human


@click.group()
def data() -> None:
    """Datasets and weights: what is here, fetch them, import them, find them in notebooks."""


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
    rows = report.listing(load(lab_dir), names, for_lab, verify=verify)
    if as_json:
        ui.dump_json([r.as_dict() for r in rows])
        return
    ui.table(f"datasets and weights ({len(rows)})", ["name", "state", "size", "labs",
                                                     "description"],
             [[r.name, r.state, ui.human_size(r.size) if r.size else "?", ",".join(r.labs),
               r.description] for r in rows])


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
    if not names and not for_lab:
        raise LabError("name entries to get, or --for LAB",
                       id="cli.nothing-to-get", fix="`labctl data list` shows the catalogue")
    lab = load(lab_dir)
    if any(hf.is_ref(n) for n in names):  # Hugging Face repositories: huggingface_hub's cache
        got = hf.download_all(lab, list(names), list(include), say=ui.err_console.print,
                              progress=not as_json)
        _print_hf(lab, got, as_json)
        names = tuple(n for n in names if not hf.is_ref(n))
        if not names and not for_lab:
            return
    rows = report.get(lab, names, for_lab, ui.DownloadProgress)
    if as_json:
        ui.dump_json([r.as_dict() for r in rows])
        return
    for r in rows:
        ui.console.print(f"{r.name}: {r.state} ({', '.join(f.path for f in r.files)})")


def _print_hf(lab: Lab, got: list[hf.Result], as_json: bool) -> None:
    if as_json:
        ui.dump_json([g.as_dict() for g in got])
        return
    for g in got:
        ui.console.print(f"{g.ref.name}: present, {len(g.files)} files,"
                         f" {ui.human_size(g.bytes)} ({lab.rel(g.folder)})")


@data.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True))
@json_option
@lab_option
@friendly
def import_(name: str, path: str, as_json: bool, lab_dir: str | None) -> None:
    """Put a file (or a folder of files) fetched another way where NAME's library looks."""
    res = report.import_files(load(lab_dir), name, path)
    if as_json:
        ui.dump_json(res.as_dict())
        return
    for p in res.placed:
        ui.console.print(f"placed {p}")
    if res.missing:
        ui.err_console.print(f"warning: {name} still lacks {', '.join(res.missing)}")


@data.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@json_option
@lab_option
@friendly
def scan(folder: str, as_json: bool, lab_dir: str | None) -> None:
    """What the notebooks and scripts in FOLDER download: catalogue entries (and which are
    missing), calls no entry covers (with a datasets.yaml skeleton), Hugging Face repos."""
    rep = report.scan(load(lab_dir), folder)
    if as_json:
        ui.dump_json(rep.as_dict())
        return
    _print_scan(rep)


def _used_by(paths: list[str]) -> str:
    return ", ".join(printable(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")


def _print_scan(rep: report.ScanReport) -> None:
    """`data scan` for people: a table of the entries, then what to fetch, what no entry
    covers and the Hugging Face repositories."""
    say = ui.console.print
    survey, rows, missing, unknown = rep.survey, rep.entries, rep.missing, rep.size_unknown
    total, hf_repos = rep.bytes_to_fetch, rep.huggingface
    for s in survey.skipped:
        ui.err_console.print(f"skipped {printable(str(s.file))}: {s.reason}")
    ui.table(f"{printable(rep.folder)}: {len(rows)} entries used", ["name", "state", "size",
                                                                     "used by"],
             [[r.name, r.state, f"{r.size:,} B" if r.size is not None else "unknown",
               _used_by(r.used_by or [])] for r in rows])
    if missing:
        more = (f" + {len(unknown)} of unknown size ({', '.join(unknown)})" if unknown
                else "")
        say(f"to fetch: {len(missing)} entries, {total:,} B ({ui.human_size(total)}){more}:"
            f" labctl data get {' '.join(missing)}")
    if survey.unknown:
        say(f"\n{len(survey.unknown)} download(s) no catalogue entry covers; labctl cannot"
            " fetch them ahead. Add an entry to datasets.yaml in the lab folder (fill in"
            " FILL-IN):")
        for c in survey.unknown:
            others = sum(1 for o in survey.calls if (o.kind, o.key) == (c.kind, c.key)) - 1
            say(f"  {printable(c.where)}: {c.code}" + (f" (and {others} more)" if others
                                                        else ""))
        say("entries:\n" + "\n".join(rep.skeletons))
    if hf_repos:
        say(f"\nHugging Face repositories ({len(hf_repos)}; not catalogue entries: they go"
            " into the cache volume's huggingface/ (HF_HOME), e.g. `huggingface-cli download"
            " REPO` in the lab):")
        for repo, where in hf_repos.items():
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
    lab = load(lab_dir)
    plan = report.removal(lab, name)
    if not plan.paths:
        if as_json:
            ui.dump_json(report.Removed(name).as_dict())
        else:
            ui.err_console.print(f"{name}: none of its files are here")
        return
    out = ui.err_console if as_json else ui.console
    for p, size in zip(plan.paths, plan.sizes, strict=True):
        out.print(f"  {lab.rel(p)}  {human(size)}")
    if not yes:
        _ask_rm(plan)
    done = plan.apply()
    if as_json:
        ui.dump_json(done.as_dict())
    else:
        out.print(f"removed {name}: {human(done.freed)} freed")


def _ask_rm(plan: report.Removal) -> None:
    """Ask before removing; without a terminal to ask on, refuse (--yes says it)."""
    if not sys.stdin.isatty():
        raise LabError(f"`data rm` asks before removing {plan.name}'s files, and there is no"
                       " terminal to ask on",
                       id="cli.no-terminal", fix=f"labctl data rm {plan.name} --yes")
    click.confirm(f"remove these {len(plan.paths)} paths ({human(plan.total)})?",
                  abort=True, err=True)
