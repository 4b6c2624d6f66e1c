"""Disk use: `labctl df` (what this lab folder's images, containers, folders and build
cache cost) and `labctl prune` (free what labctl made and no longer needs)."""

from __future__ import annotations

import sys

import click

from labctl.cli.common import engine, friendly, json_option, lab_option, load
from labctl.errors import LabError


@click.command("df")
@click.argument("names", nargs=-1)
@json_option
@lab_option
@friendly
def df(names: tuple[str, ...], as_json: bool, lab_dir: str | None) -> None:
    """Disk use of this lab folder: images (shared layers once), older images, containers,
    data folders, build cache, and what `labctl prune` would free."""
    from labctl.cli import ui
    from labctl.image import disk

    lab = load(lab_dir)
    for n in names:
        lab.spec(n)  # an unknown name is an error, with the names there are
    rep = disk.report(engine(lab), lab, names)
    if as_json:
        ui.dump_json(rep.as_dict())
        return
    h = disk.human
    rows = []
    ours = set(lab.spec_names())
    for s in rep.specs:
        img = s.image
        older = sum(o.unique for o in s.older)
        conts = ", ".join(f"{c['name']} ({c['state']})" for c in s.containers) or "-"
        named = ", ".join(t for o in s.tagged for t in o.tags) or "-"
        size = h(img.size) if img else "not built" if s.spec in ours else "-"
        rows.append([s.spec, size, h(img.shared) if img else "-", h(img.unique) if img else "-",
                     f"{len(s.older)}: {h(older)}" if s.older else "-", named, conts])
    ui.table(f"images of lab {rep.lab}", ["spec", "image", "shared", "unique", "older images",
                                          "other names", "containers"], rows)
    frows = []
    for f in rep.folders:
        frows.append([f.volume, lab.rel(f.path), h(f.size), ""])
        frows += [["", "", h(size), name] for name, size in f.entries.items()]
    if frows:
        ui.table("lab folders", ["volume", "path", "size", "catalogue entry"], frows)
    c = rep.cache
    ui.table("build cache", ["what", "size"], [
        ["labctl: uv cache mount", h(c.uv)], ["labctl: apt cache mounts", h(c.apt)],
        ["labctl: build layers", h(c.labctl)], ["other builds", h(c.other)],
        ["labctl's budget (build_cache_budget)", h(c.budget)]])
    say = ui.console.print
    folders = sum(f.size for f in rep.folders)
    say(f"total: images {h(rep.images_total)} (each layer once), folders {h(folders)},"
        f" labctl's build cache {h(c.ours)}")
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
    from labctl.cli import ui
    from labctl.image import disk

    lab = load(lab_dir)
    e = engine(lab)
    plan = disk.plan_prune(disk.gather(e, lab), lab, lab.settings.build_cache_budget,
                           containers=containers)
    h = disk.human
    out = ui.err_console if as_json else ui.console
    if not plan.items:
        if as_json:
            ui.dump_json({"plan": plan.as_dict(), "removed": [], "freed": 0})
        else:
            out.print("nothing to prune: no older images, stopped containers"
                      " (--containers) or build cache over the budget")
        return
    if not as_json:
        ui.table("to remove", ["kind", "id", "what", "size", "why"],
                 [[i.kind, i.id, i.name, h(i.size), i.why] for i in plan.items])
        out.print(f"frees about {h(plan.total)}")
    if dry_run:
        if as_json:
            ui.dump_json({"plan": plan.as_dict(), "dry_run": True})
        return
    if not yes:
        if not sys.stdin.isatty():
            raise LabError("prune asks before removing, and there is no terminal to ask on",
                           id="disk.no-terminal",
                           fix="pass --yes (or --dry-run to see what it would remove)")
        click.confirm(f"remove these {len(plan.items)} items?", abort=True, err=True)
    res = disk.apply_prune(e, plan)
    if as_json:
        ui.dump_json({"plan": plan.as_dict(), **res.as_dict()})
        return
    measured = f" (the engine's disk has {h(res.measured)} more free)" \
        if res.measured is not None else ""
    out.print(f"removed {len(res.removed)} items, freed about {h(res.freed)}{measured}")
    for s in res.skipped:
        out.print(f"kept {s.kind} {s.id} ({s.name}): in use meanwhile")
