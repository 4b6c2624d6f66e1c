"""Reproduce: `labctl lock`, `labctl freeze` and `labctl diff`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from labctl.cli.common import engine, friendly, json_option, lab_option, load, maybe_lab
from labctl.errors import LabError

if TYPE_CHECKING:
    from labctl.config.lockfile import Change

_COLOURS = {"upgraded": "green", "downgraded": "yellow", "changed": "yellow",
            "added": "cyan", "removed": "red", "not locked": "dim"}


def _change_rows(changes: list[Change]) -> list[list[object]]:
    from rich.text import Text

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
    from labctl.cli import ui
    from labctl.lock.resolve import lock as do_lock
    from labctl.lock.resolve import upgrade_arg

    lab = load(lab_dir)
    names = names or tuple(lab.spec_names())
    specs = [lab.spec(n) for n in names]  # validate every spec before resolving any
    wanted = [p.strip() for u in packages for p in u.split(",") if p.strip()]
    if upgrade and wanted:
        raise LabError("--upgrade moves every package; --upgrade-package only those named",
                       id="cli.upgrade-both", fix="use one of the two")
    how = upgrade_arg(upgrade, wanted)
    e = engine(lab)
    results = []
    for spec in specs:
        with ui.status(f"locking {spec.name}") as update:
            # a conflict's ways out reach --json through the error's extra
            res = do_lock(e, lab, spec, upgrade=how,
                          say=lambda m, s=spec.name, u=update: u(f"{s}: {m}"))
        results.append(res)
        if as_json:
            continue
        where = lab.rel(res.path)
        if res.previous is None:
            ui.console.print(f"wrote {where}: {len(res.lock.pins())} packages, "
                             f"{res.lock.hashed()} with hashes ({res.seconds:.0f}s)")
        elif not res.changes:
            ui.console.print(f"{where}: no version changed ({res.seconds:.0f}s)")
        else:
            ui.table(f"{where}: {len(res.changes)} changed ({res.seconds:.0f}s)",
                     ["package", "old", "new", "change"], _change_rows(res.changes))
    if as_json:
        ui.dump_json([r.as_dict() for r in results])


@click.command()
@click.argument("name")
@json_option
@lab_option
@friendly
def freeze(name: str, as_json: bool, lab_dir: str | None) -> None:
    """The Python packages image NAME really holds (a spec's image, or any image).

    Read inside a throw-away container of it, with no network."""
    from labctl.cli import ui
    from labctl.lock.resolve import freeze as do_freeze
    from labctl.lock.resolve import source

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
    from labctl.cli import ui
    from labctl.config.lockfile import diff_versions
    from labctl.engine import Engine
    from labctl.lock.resolve import packages, source

    lab = maybe_lab(lab_dir)
    engines: list[Engine] = []

    def once() -> Engine:
        if not engines:
            engines.append(engine())
        return engines[0]

    sa, sb = source(a, lab), source(b, lab)
    pa, pb = packages(sa, once), packages(sb, once)
    kinds = (sa.kind, sb.kind)
    image_side = {("lock", "image"): "new", ("image", "lock"): "old"}.get(kinds)
    changes = diff_versions(pa, pb, image_side)
    same = len(pa.keys() & pb.keys()) - sum(1 for c in changes if c.old and c.new)
    if as_json:
        ui.dump_json({"a": sa.ref, "b": sb.ref, "same": same,
                      "changes": [c.as_dict() for c in changes]})
        return
    if not changes:
        ui.console.print(f"{sa.label} and {sb.label}: the same {same} packages")
        return
    ui.table(f"{sa.label} -> {sb.label}: {len(changes)} differ, {same} the same",
             ["package", sa.ref if len(sa.ref) < 40 else "A", sb.ref if len(sb.ref) < 40
              else "B", "change"], _change_rows(changes))


@click.command()
@click.argument("name")
@click.argument("package")
@json_option
@lab_option
@friendly
def why(name: str, package: str, as_json: bool, lab_dir: str | None) -> None:
    """Which of spec NAME's requirements bring PACKAGE in, and which constrain its version.

    Read from images/NAME.lock alone (the resolver's "via" notes): no engine, no network."""
    from labctl.cli import ui
    from labctl.config import lockfile
    from labctl.lock.conflicts import why as do_why

    lab = load(lab_dir)
    spec = lab.spec(name)
    path = lockfile.lock_path(spec, lab.images_dir)
    lock = lockfile.read_lock(path, name)
    if lock is None:
        raise LabError(f"{name} has no lock file: `why` reads what brought each package in"
                       " from it", id="cli.no-lock-file", file=lab.rel(path),
                       fix=f"run `labctl lock {name}` first")
    reqs = [*spec.lab_packages, *spec.pip_nodeps, *spec.extras]
    if spec.torch:
        reqs += [f"torch=={spec.torch.version}", *spec.torch.packages]
    found = do_why(lock, reqs, package)
    if found is None:
        raise LabError(f"{package} is not in {lab.rel(path)}: {name} does not install it",
                       id="cli.not-in-lock", fix=f"`labctl add {name} {package}` adds it")
    stale = lockfile.state(spec, lock) == "stale"
    if as_json:
        ui.dump_json({"spec": name, "lock": lab.rel(path), "stale": stale,
                      **found.as_dict()})
        return
    say = ui.console.print
    say(f"{found.package} {found.version} in {lab.rel(path)}"
        + (f" (stale: images/{name}.yaml changed since; `labctl lock {name}`)" if stale
           else ""))
    if found.chains:
        say(f"brought in by {len(found.chains)} of the spec's requirements:")
        for chain in found.chains:
            say(f"  {chain[0]}: " + " -> ".join(chain[1:]))
    else:
        say("no requirement of the spec leads to it in the lock's notes")
    if found.constrained_by:
        say("its version is constrained by: " + ", ".join(found.constrained_by),
            markup=False, highlight=False)
