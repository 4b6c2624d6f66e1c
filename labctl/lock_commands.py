"""The click commands of reproducible labs: `labctl lock`, `labctl freeze`, `labctl diff`,
and the lock policy that `labctl build` applies (warn on a stale lock; --locked: fail)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from labctl.cli import _lab, friendly, lab_option
from labctl.errors import LabError

if TYPE_CHECKING:
    from labctl.lab import Lab
    from labctl.lockfile import Change
    from labctl.render import BuildContext

_COLOURS = {"upgraded": "green", "downgraded": "yellow", "changed": "yellow",
            "added": "cyan", "removed": "red", "not locked": "dim"}


def lock_policy(lab: Lab, contexts: Sequence[BuildContext], locked: bool) -> list[str]:
    """Warnings for `labctl build` about stale locks; with ``locked`` (CI), a LabError for
    any spec whose lock is missing or stale, naming each spec file and the fix."""
    warnings, problems = [], []
    for ctx in contexts:
        name = ctx.spec.name
        spec_file = lab.rel(ctx.spec.source) if ctx.spec.source else f"images/{name}.yaml"
        lock_file = spec_file.removesuffix(".yaml") + ".lock"
        if ctx.lock_state == "stale":
            msg = f"{lock_file} is stale: {spec_file} changed since it was locked"
            problems.append(msg)
            warnings.append(f"{msg}; building with the pins that still fit"
                            f" (run `labctl lock {name}` to lock it again)")
            warnings += [f"  {note}" for note in ctx.lock_notes]
        elif ctx.lock_state == "none":
            problems.append(f"{spec_file} has no lock file ({lock_file})")
    if locked and problems:
        names = " ".join(c.spec.name for c in contexts if c.lock_state != "locked")
        raise LabError(
            "--locked: every spec must have a current lock file",
            details=problems,
            fix=f"run `labctl lock {names}` and commit the .lock files"
                " (or build without --locked)",
        )
    return warnings


def _change_rows(changes: list[Change]) -> list[list[object]]:
    from rich.text import Text

    return [[c.package, c.old or "-", c.new or "-", Text(c.kind, style=_COLOURS[c.kind])]
            for c in changes]


@click.command()
@click.argument("names", nargs=-1)
@click.option("--upgrade", "upgrade", multiple=True, is_flag=False, flag_value=":all:",
              metavar="[PACKAGE]",
              help="Move versions forward: all of them, or only PACKAGE (repeatable, or"
                   " comma-separated). Without it, locked versions stay unless the spec"
                   " excludes them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@lab_option
@friendly
def lock(names: tuple[str, ...], upgrade: tuple[str, ...], as_json: bool,
         lab_dir: str | None) -> None:
    """Resolve the Python packages of specs NAMES (default: all) in their own base image and
    Python, and write images/NAME.lock with exact versions and hashes."""
    from labctl import ui
    from labctl.engine import Engine
    from labctl.lock import lock as do_lock
    from labctl.lock import upgrade_arg

    lab = _lab(lab_dir)
    known = lab.spec_names()
    packages = [p.strip() for u in upgrade if u != ":all:" for p in u.split(",") if p.strip()]
    if not names and packages and all(p in known for p in packages):
        # `labctl lock --upgrade d2l`: click read the spec name as the option's value.
        names, packages, upgrade = tuple(packages), [], (":all:",)
    names = names or tuple(known)
    specs = [lab.spec(n) for n in names]  # validate every spec before resolving any
    how = upgrade_arg(":all:" in upgrade and not packages, packages)
    engine = Engine.connect()
    results = []
    for spec in specs:
        with ui.err_console.status(f"locking {spec.name}") as status:
            res = do_lock(engine, lab, spec, upgrade=how,
                          say=lambda m, s=spec.name: status.update(f"{s}: {m}"))
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@lab_option
@friendly
def freeze(name: str, as_json: bool, lab_dir: str | None) -> None:
    """The Python packages image NAME really contains (a spec's image, or any image ref),
    read inside a throw-away container of it."""
    from labctl import ui
    from labctl.engine import Engine
    from labctl.lock import freeze as do_freeze
    from labctl.lock import source

    src = source(name, _maybe_lab(lab_dir))
    if src.kind != "image":
        raise LabError(f"{name} is a file; freeze reads an image",
                       fix="name a spec or an image; compare a lock with `labctl diff`")
    t0 = time.monotonic()
    pkgs = do_freeze(Engine.connect(), src.ref)
    if as_json:
        ui.dump_json({"image": src.ref, "packages": pkgs})
        return
    ui.table(f"{src.ref}: {len(pkgs)} packages ({time.monotonic() - t0:.1f}s)",
             ["package", "version"], sorted(pkgs.items()))


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@lab_option
@friendly
def diff(a: str, b: str, as_json: bool, lab_dir: str | None) -> None:
    """Compare the packages of A and B: each a lock file path, a spec name (its built image)
    or an image ref. Shows what changed between two builds."""
    from labctl import ui
    from labctl.engine import Engine
    from labctl.lock import packages, source
    from labctl.lockfile import diff_versions

    lab = _maybe_lab(lab_dir)
    engines: list[Engine] = []

    def engine() -> Engine:
        if not engines:
            engines.append(Engine.connect())
        return engines[0]

    sa, sb = source(a, lab), source(b, lab)
    pa, pb = packages(sa, engine), packages(sb, engine)
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


def _maybe_lab(lab_dir: str | None) -> Lab | None:
    """The lab, when there is one: diff and freeze also work on plain images and files."""
    try:
        return _lab(lab_dir)
    except LabError:
        if lab_dir:
            raise
        return None
