"""Reproduce: `labctl lock`, `labctl freeze`, `labctl diff` and `labctl why`."""

from __future__ import annotations

import time

import click
from rich.text import Text

from labctl.cli import ui
from labctl.cli.common import engine, friendly, json_option, lab_option, load, maybe_lab
from labctl.config.lab import Lab
from labctl.config.lockfile import Change
from labctl.errors import LabError
from labctl.lock.resolve import Comparison, LockResult, compare, lock_request, source
from labctl.lock.resolve import freeze as do_freeze
from labctl.lock.resolve import lock as do_lock
from labctl.lock.why import WhyResult, explain

_COLOURS = {"upgraded": "green", "downgraded": "yellow", "changed": "yellow",
            "added": "cyan", "removed": "red", "not locked": "dim"}


def _change_rows(changes: list[Change]) -> list[list[object]]:
    return [[c.package, c.old or "-", c.new or "-", Text(c.kind, style=_COLOURS[c.kind])]
            for c in changes]


@click.command()
@click.argument("names", nargs=-1)
@click.option("--upgrade", is_flag=True,
              help="Move every version forward. Without it, locked versions stay unless the"
                   " spec excludes them.")
@click.option("--upgrade-package", "-P", "packages", multiple=True, metavar="PACKAGE",
              help="Move only PACKAGE forward (repeatable, or comma-separated).")
@json_option
@lab_option
@friendly
def lock(names: tuple[str, ...], upgrade: bool, packages: tuple[str, ...], as_json: bool,
         lab_dir: str | None) -> None:
    """Write images/NAME.lock for specs NAMES (default: all): exact versions and hashes.

    The packages are resolved inside each spec's own base image and Python."""
    lab = load(lab_dir)
    specs, how = lock_request(lab, names, upgrade, packages)
    e = engine(lab)
    results = []
    for spec in specs:  # each shown as it is written: a lab of many specs takes minutes
        with ui.status(f"locking {spec.name}") as update:
            # a conflict's ways out reach --json through the error's extra
            res = do_lock(e, lab, spec, upgrade=how,
                          say=lambda m, s=spec.name, u=update: u(f"{s}: {m}"))
        results.append(res)
        if not as_json:
            _show_lock(lab, res)
    if as_json:
        ui.dump_json([r.as_dict() for r in results])


def _show_lock(lab: Lab, res: LockResult) -> None:
    """A first lock by its size; a relock by what moved (what a reviewer of it needs)."""
    where = lab.rel(res.path)
    if res.previous is None:
        ui.console.print(f"wrote {where}: {len(res.lock.pins())} packages, "
                         f"{res.lock.hashed()} with hashes ({res.seconds:.0f}s)")
    elif not res.changes:
        ui.console.print(f"{where}: no version changed ({res.seconds:.0f}s)")
    else:
        ui.table(f"{where}: {len(res.changes)} changed ({res.seconds:.0f}s)",
                 ["package", "old", "new", "change"], _change_rows(res.changes))


@click.command()
@click.argument("name")
@json_option
@lab_option
@friendly
def freeze(name: str, as_json: bool, lab_dir: str | None) -> None:
    """The Python packages image NAME really holds (a spec's image, or any image).

    Read inside a throw-away container of it, with no network."""
    src = source(name, maybe_lab(lab_dir))
    if src.kind != "image":
        raise LabError(f"{name} is a file; freeze reads an image",
                       id="cli.freeze-needs-image",
                       fix="name a spec or an image; compare a lock with `labctl diff`")
    t0 = time.monotonic()
    pkgs = do_freeze(engine(), src.ref)
    if as_json:
        ui.dump_json({"image": src.ref, "packages": pkgs})
        return
    ui.table(f"{src.ref}: {len(pkgs)} packages ({time.monotonic() - t0:.1f}s)",
             ["package", "version"], sorted(pkgs.items()))


@click.command()
@click.argument("a")
@click.argument("b")
@json_option
@lab_option
@friendly
def diff(a: str, b: str, as_json: bool, lab_dir: str | None) -> None:
    """Compare the packages of A and B: lock files, specs (their images) or images.

    Shows what changed between two builds, or between a lock and what was built."""
    found = compare(a, b, maybe_lab(lab_dir), engine)
    if as_json:
        ui.dump_json(found.as_dict())
    else:
        _show_diff(found)


def _show_diff(found: Comparison) -> None:
    """Only the packages that differ: the same ones are counted, not listed."""
    sa, sb = found.a, found.b
    if not found.changes:
        ui.console.print(f"{sa.label} and {sb.label}: the same {found.same} packages")
        return
    # a long ref (an image digest) would squeeze the table: then just A and B
    ui.table(f"{sa.label} -> {sb.label}: {len(found.changes)} differ, {found.same} the same",
             ["package", sa.ref if len(sa.ref) < 40 else "A", sb.ref if len(sb.ref) < 40
              else "B", "change"], _change_rows(found.changes))


@click.command()
@click.argument("name")
@click.argument("package")
@json_option
@lab_option
@friendly
def why(name: str, package: str, as_json: bool, lab_dir: str | None) -> None:
    """Which of spec NAME's requirements bring PACKAGE in, and which constrain its version.

    Read from images/NAME.lock alone (the resolver's "via" notes): no engine, no network."""
    found = explain(load(lab_dir), name, package)
    if as_json:
        ui.dump_json(found.as_dict())
    else:
        _show_why(found)


def _show_why(res: WhyResult) -> None:
    """One chain a line, from the spec's requirement down to the package."""
    say, found = ui.console.print, res.found
    say(f"{found.package} {found.version} in {res.lock}"
        + (f" (stale: images/{res.spec}.yaml changed since; `labctl lock {res.spec}`)"
           if res.stale else ""))
    if found.chains:
        say(f"brought in by {len(found.chains)} of the spec's requirements:")
        for chain in found.chains:
            say(f"  {chain[0]}: " + " -> ".join(chain[1:]))
    else:
        say("no requirement of the spec leads to it in the lock's notes")
    if found.constrained_by:
        say("its version is constrained by: " + ", ".join(found.constrained_by),
            markup=False, highlight=False)
