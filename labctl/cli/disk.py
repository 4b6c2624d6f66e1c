"""Disk use: `labctl df` (what this lab folder's images, containers, folders and build
cache cost) and `labctl prune` (free what labctl made and no longer needs). The figures
and the plan are labctl.image.disk's; these commands print them."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from labctl.cli import ui
from labctl.cli.common import engine, friendly, json_option, lab_option, load
from labctl.config.lab import Lab
from labctl.errors import LabError
from labctl.image import disk
from labctl.image.disk import human as h


@click.command("df")
@click.argument("names", nargs=-1)
@json_option
@lab_option
@friendly
def df(names: tuple[str, ...], as_json: bool, lab_dir: str | None) -> None:
    """Disk use of this lab folder: images (shared layers once), older images, containers,
    data folders, build cache, and what `labctl prune` would free."""
    lab = load(lab_dir)
    for n in names:
        lab.spec(n)  # an unknown name is an error, with the names there are
    rep = disk.report(engine(lab), lab, names)
    if as_json:
        ui.dump_json(rep.as_dict())
        return
    _print_images(lab, rep)
    _print_folders(lab, rep)
    _print_cache(rep)


def _print_images(lab: Lab, rep: disk.DiskReport) -> None:
    rows = []
    ours = set(lab.spec_names())
    for s in rep.specs:
        img = s.image
        conts = ", ".join(f"{c['name']} ({c['state']})" for c in s.containers) or "-"
        named = ", ".join(t for o in s.tagged for t in o.tags) or "-"
        size = h(img.size) if img else "not built" if s.spec in ours else "-"
        rows.append([s.spec, size, h(img.shared) if img else "-", h(img.unique) if img else "-",
                     f"{len(s.older)}: {h(s.older_bytes)}" if s.older else "-", named, conts])
    ui.table(f"images of lab {rep.lab}", ["spec", "image", "shared", "unique", "older images",
                                          "other names", "containers"], rows)


def _print_folders(lab: Lab, rep: disk.DiskReport) -> None:
    rows = []
    for f in rep.folders:
        rows.append([f.volume, lab.rel(f.path), h(f.size), ""])
        rows += [["", "", h(size), name] for name, size in f.entries.items()]
    if rows:
        ui.table("lab folders", ["volume", "path", "size", "catalogue entry"], rows)


def _print_cache(rep: disk.DiskReport) -> None:
    """The build cache, then the totals and what a prune would free."""
    c = rep.cache
    ui.table("build cache", ["what", "size"], [
        ["labctl: uv cache mount", h(c.uv)], ["labctl: apt cache mounts", h(c.apt)],
        ["labctl: build layers", h(c.labctl)], ["other builds", h(c.other)],
        ["labctl's budget (build_cache_budget)", h(c.budget)]])
    say = ui.console.print
    say(f"total: images {h(rep.images_total)} (each layer once), folders"
        f" {h(rep.folders_total)}, labctl's build cache {h(c.ours)}")
    free = f"; {h(rep.free)} free on the engine's disk ({rep.root})" if rep.free is not None \
        else ""
    say(f"`labctl prune --containers` would free {h(rep.prune.total)}{free}")


@click.command()
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before removing.")
@click.option("--containers", is_flag=True, help="Also remove this lab's stopped containers.")
@json_option
@lab_option
@friendly
def prune(dry_run: bool, yes: bool, containers: bool, as_json: bool, lab_dir: str | None
          ) -> None:
    """Free what labctl made for this lab and no longer needs (asks first).

    This lab's untagged older images, its stopped lab containers (--containers), and
    labctl's build cache over build_cache_budget (labctl.yaml). Never a current image, one
    a container uses, anything labctl did not make, or a file of the lab folder."""
    lab = load(lab_dir)
    e = engine(lab)
    plan = disk.prune_plan(e, lab, containers=containers)
    out = ui.err_console if as_json else ui.console
    if not as_json:
        _print_plan(plan, out)
    if not plan.items or dry_run:
        if as_json:
            ui.dump_json(plan.as_dict_unapplied(dry_run=dry_run))
        return
    if not yes:
        _ask_prune(plan)
    res = disk.apply_prune(e, plan)
    if as_json:
        ui.dump_json(res.as_dict())
    else:
        _print_pruned(res, out)


def _print_plan(plan: disk.PrunePlan, out: Console) -> None:
    if not plan.items:
        out.print("nothing to prune: no older images, stopped containers (--containers) or"
                  " build cache over the budget")
        return
    ui.table("to remove", ["kind", "id", "what", "size", "why"],
             [[i.kind, i.id, i.name, h(i.size), i.why] for i in plan.items])
    out.print(f"frees about {h(plan.total)}")


def _print_pruned(res: disk.PruneResult, out: Console) -> None:
    measured = f" (the engine's disk has {h(res.measured)} more free)" \
        if res.measured is not None else ""
    out.print(f"removed {len(res.removed)} items, freed about {h(res.freed)}{measured}")
    for s in res.skipped:
        out.print(f"kept {s.kind} {s.id} ({s.name}): in use meanwhile")


def _ask_prune(plan: disk.PrunePlan) -> None:
    """Ask before removing; without a terminal to ask on, refuse (--yes says it)."""
    if not sys.stdin.isatty():
        raise LabError("prune asks before removing, and there is no terminal to ask on",
                       id="disk.no-terminal",
                       fix="pass --yes (or --dry-run to see what it would remove)")
    click.confirm(f"remove these {len(plan.items)} items?", abort=True, err=True)
