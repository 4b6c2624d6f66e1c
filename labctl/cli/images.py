"""Build: `labctl list`, `labctl render` and `labctl build`; `labctl add` and `labctl push`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from labctl.cli import ui
from labctl.cli.common import built, engine, friendly, json_option, lab_option, load
from labctl.config import lockfile, yamlfile
from labctl.config.edit import add_to_spec, check_packages
from labctl.config.safewrite import write_atomic
from labctl.errors import LabError
from labctl.image.build import BuildOptions, BuildResult, Showing, build_each, check_tag
from labctl.image.build import build as do_build
from labctl.image.listing import list_specs
from labctl.image.push import check_registry
from labctl.image.push import push as do_push
from labctl.image.render import render as do_render
from labctl.lock import conflicts
from labctl.lock.policy import lock_policy
from labctl.lock.resolve import explain_conflict
from labctl.lock.resolve import lock as do_lock

if TYPE_CHECKING:
    from labctl.config.lab import Lab
    from labctl.config.spec import ImageSpec
    from labctl.engine import Engine
    from labctl.image.build import BuildEvent
    from labctl.image.render import BuildContext
    from labctl.lock.resolve import LockResult

BUILDER = click.option("--builder", type=click.Choice(["auto", "classic", "buildkit"]),
                       default=None, help="BuildKit (the docker CLI) or the docker SDK's"
                       " classic builder; default: the lab's builder setting, else auto.")


@click.command("list")
@json_option
@lab_option
@friendly
def list_(as_json: bool, lab_dir: str | None) -> None:
    """The lab's image specs and the state of their images."""
    lab = load(lab_dir)
    rows = list_specs(lab)
    if as_json:
        ui.dump_json(rows)
        return
    ui.table(
        f"lab {lab.root}",
        ["spec", "image", "state", "lock", "torch", "in image", "gpu", "description"],
        [[r["name"], r["tag"], r["state"], r["lock"], r["torch"] or "-",
          r["image_torch"] or "-", r["gpu"] or "-", r["description"]] for r in rows],
    )


@click.command()
@click.argument("name")
@click.option("--context", "context_dir", type=click.Path(file_okay=False),
              help="Write the whole build context to this new (or empty) folder.")
@click.option("--builder", type=click.Choice(["classic", "buildkit"]), default="classic",
              show_default=True, help="Whose Dockerfile: the same layers, BuildKit's mounts.")
@json_option
@lab_option
@friendly
def render(name: str, context_dir: str | None, builder: str, as_json: bool,
           lab_dir: str | None) -> None:
    """Print the Dockerfile rendered from spec NAME."""
    lab = load(lab_dir)
    ctx = do_render(lab, lab.spec(name)).for_builder(builder)
    if context_dir:
        ctx.write(Path(context_dir))
        if as_json:
            ui.dump_json({"spec": name, "context": str(Path(context_dir).resolve()),
                          "files": sorted(ctx.files), "hash": ctx.digest})
        else:
            click.echo(f"wrote {len(ctx.files)} files to {context_dir} (hash {ctx.digest})",
                       err=True)
    elif as_json:
        ui.dump_json({"spec": name, "dockerfile": ctx.dockerfile, "hash": ctx.digest,
                      "lock": ctx.lock_state})
    else:
        click.echo(ctx.dockerfile, nl=False)


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--no-cache", is_flag=True, help="Rebuild every layer.")
@click.option("--pull/--no-pull", default=True, show_default=True,
              help="Pull the base image when it is missing.")
@click.option("--progress", type=click.Choice(["auto", "plain", "json"]), default="auto",
              show_default=True, help="json: one object per build event, for scripts.")
@click.option("--tag", help="Tag to give the image (default: labctl/NAME:latest).")
@click.option("--force", is_flag=True, help="Build even when the image is current.")
@click.option("--locked", is_flag=True,
              help="Fail unless every spec has a current lock file (images/NAME.lock), for CI.")
@BUILDER
@json_option
@lab_option
@friendly
def build(names: tuple[str, ...], no_cache: bool, pull: bool, progress: str, tag: str | None,
          force: bool, locked: bool, builder: str | None, as_json: bool,
          lab_dir: str | None) -> None:
    """Build the images of specs NAMES (a no-op for images that are current)."""
    check_tag(tag, names)
    lab = load(lab_dir)
    contexts = [do_render(lab, lab.spec(n)) for n in names]  # validate all before building
    for warning in lock_policy(lab, contexts, locked):  # --locked: missing/stale is an error
        ui.err_console.print(warning if warning.startswith(" ") else f"warning: {warning}")
    e = engine(lab)
    opts = BuildOptions(nocache=no_cache, pull=pull, force=force, builder=builder)
    results = build_each(e, lab, contexts, tag, opts, _showing(e, lab, progress, as_json),
                         lambda ctx, res: _said(lab, ctx, res, progress, as_json))
    if as_json:
        ui.dump_json([r.as_dict() for r in results])


def _showing(e: Engine, lab: Lab, progress: str, as_json: bool) -> Showing:
    """How `labctl build` shows each build (on stderr when stdout carries --json), a
    conflict said with its ways out."""

    @contextmanager
    def show(ctx: BuildContext) -> Iterator[Callable[[BuildEvent], None]]:
        with ui.BuildProgress(ctx.spec.name, progress,
                              ui.err_console if as_json else None) as on_event:
            try:
                yield on_event
            except LabError as err:  # a conflict: with the ways out
                raise explain_conflict(e, lab, ctx.spec, err, "\n".join(err.details)
                                       ) from None

    return show


def _said(lab: Lab, ctx: BuildContext, res: BuildResult, progress: str, as_json: bool
          ) -> None:
    """What `labctl build` says of each image as it is done."""
    if progress == "json":
        ui.dump_json(res.__dict__)
    elif not as_json and res.status == "current":
        ui.console.print(f"{res.tag} is current (hash {ctx.digest}): nothing to build")
    elif not as_json and res.status == "pulled":
        ui.console.print(f"{res.tag}: pulled from {lab.registry_ref(ctx.spec.name)}, the"
                         f" same spec (hash {ctx.digest}): nothing to build")
    elif not as_json:
        ui.console.print(
            f"built {res.tag} in {res.seconds:.0f}s ({res.backend}): {res.steps} steps, "
            f"{res.cached_steps} from cache, {ui.human_size(res.size)}"
        )
    if res.trimmed:  # said on stderr: stdout may carry --json
        ui.err_console.print(f"trimmed labctl's build cache by {ui.human_size(res.trimmed)}"
                             f" to stay within build_cache_budget"
                             f" ({ui.human_size(lab.settings.build_cache_budget)})")


@click.command()
@click.argument("name")
@click.argument("packages", nargs=-1)
@click.option("--no-build", is_flag=True, help="Only write the spec (and the lock).")
@click.option("--resolve", "way", type=click.IntRange(min=1), is_flag=False, flag_value=1,
              default=None, metavar="[N]",
              help="When the packages conflict, write way out N (default 1: the smallest"
                   " change) into the spec, then lock and build. Put it after the packages,"
                   " or write --resolve=N.")
@json_option
@lab_option
@friendly
def add(name: str, packages: tuple[str, ...], no_build: bool, way: int | None, as_json: bool,
        lab_dir: str | None) -> None:
    """Keep PACKAGES in lab NAME: its spec's extras, its lock, a rebuild of that layer.

    When they conflict with the spec, labctl shows the ways out; `--resolve` writes one."""
    if not packages and way is None:
        raise LabError("name the packages to add",
                       id="cli.no-packages", fix=f"e.g. labctl add {name} seaborn; or"
                       f" `labctl add {name} --resolve` to resolve the spec as it is")
    check_packages(packages)
    lab = load(lab_dir)
    path = lab.images_dir / f"{name}.yaml"
    result: dict[str, object] = {"spec": name, "file": str(path), "added": list(packages)}
    if not packages:  # --resolve alone: the spec as it is
        _resolve_and_build(lab, name, lab.spec(name), path.read_bytes(), way or 1, no_build,
                           as_json, result)
        return
    after, raw = add_to_spec(lab, name, packages)
    result["extras"] = after.extras
    ui.err_console.print(f"{lab.rel(path)}: extras += {', '.join(packages)}")
    if way is not None:
        _resolve_and_build(lab, name, after, raw, way, no_build, as_json, result)
        return
    _lock_and_build(lab, packages, after, raw, no_build, result)
    if as_json:
        ui.dump_json(result)


def _changes(res: LockResult) -> str:
    """A lock's changes in one line ("" when there are none)."""
    return ", ".join(f"{c.package} {c.old or '-'} -> {c.new}" for c in res.changes)


def _build_edited(e: Engine, lab: Lab, spec: ImageSpec, explain: bool) -> BuildResult:
    """`labctl add`'s build of the edited spec (its unchanged layers come from the cache),
    said on stderr; ``explain``: a conflict is said with its ways out."""
    ctx = do_render(lab, spec)
    with ui.BuildProgress(spec.name, "auto", ui.err_console) as show:
        try:
            res = do_build(e, lab, ctx, lab.image_tag(spec.name), on_event=show)
        except LabError as err:
            if not explain:
                raise
            raise explain_conflict(e, lab, spec, err, "\n".join(err.details)) from None
    ui.err_console.print(f"built {res.tag} in {res.seconds:.0f}s ({res.cached_steps} of"
                         f" {res.steps} steps from cache)")
    return res


def _lock_and_build(lab: Lab, packages: tuple[str, ...], spec: ImageSpec, raw: bytes,
                    no_build: bool, result: dict[str, object]) -> None:
    """`labctl add` after the edit: the lock again (when the spec has one), then the
    build. A conflict on the way puts the spec back as it was (``raw``: it would not
    build), and its fix adds the packages again with the way out the learner picks."""
    name, path = spec.name, lab.images_dir / f"{spec.name}.yaml"
    e = engine(lab)
    try:
        if lockfile.read_lock(lockfile.lock_path(spec, lab.images_dir), name) is not None:
            res = do_lock(e, lab, spec)
            result["lock"] = res.as_dict()
            ui.err_console.print(f"{lab.rel(res.path)}: " + (_changes(res) or "no change"))
        if not no_build:
            result["build"] = _build_edited(e, lab, spec, explain=True).as_dict()
    except conflicts.ConflictError as c:
        write_atomic(path, raw)
        c.fix = (f"{lab.rel(path)} is as it was; `labctl add {name} {' '.join(packages)}"
                 " --resolve` adds them with way 1 (`--resolve=N` way N), locks and builds"
                 if c.advice.ways else c.fix)
        c.extra.update(result)  # --json: what add did before the conflict, too
        raise


def _no_such_way(way: int, ways: int) -> LabError:
    """`labctl add --resolve=N` with N past the ways out found."""
    return LabError(f"--resolve={way}: there are {ways} ways out", id="cli.no-such-way",
                    fix=f"pick one of 1..{ways}")


def _write_way(lab: Lab, name: str, c: conflicts.ConflictError, way: int, as_json: bool,
               result: dict[str, object]) -> ImageSpec:
    """Conflict ``c`` said with its ways out, and way ``way`` written into
    images/NAME.yaml (its other lines and comments kept); the spec as it is now."""
    advice = c.advice
    if as_json:
        result["advice"] = advice.as_dict()
    for line in [advice.conflict.headline(), *advice.lines()]:
        ui.err_console.print(line)
    if not advice.ways:
        raise c
    if way > len(advice.ways):
        raise _no_such_way(way, len(advice.ways)) from None
    chosen = advice.ways[way - 1]
    path = lab.images_dir / f"{name}.yaml"
    text = path.read_bytes().decode("utf-8")
    write_atomic(path, conflicts.apply(yamlfile.parse(path, text), text, chosen))
    result["resolved"] = {"way": way, **chosen.as_dict()}
    ui.err_console.print(f"way out {way}: {chosen.title()}: {lab.rel(path)} rewritten")
    return lab.spec(name)


def _resolve_and_build(lab: Lab, name: str, spec: ImageSpec, raw: bytes, way: int,
                       no_build: bool, as_json: bool, result: dict[str, object]) -> None:
    """`labctl add --resolve`: lock ``spec``; when its packages conflict, write way out
    ``way`` into images/NAME.yaml and lock again; then build (the layers that did not
    change come from the cache). ``raw`` is the spec file before `add` touched it: it
    goes back when no way out can be written."""
    path = lab.images_dir / f"{name}.yaml"
    e = engine(lab)
    try:
        with ui.status(f"locking {name}") as update:
            try:
                res = do_lock(e, lab, spec, say=lambda m: update(f"{name}: {m}"))
            except conflicts.ConflictError as c:
                spec = _write_way(lab, name, c, way, as_json, result)
                update(f"{name}: locking again")
                res = do_lock(e, lab, spec, say=lambda m: update(f"{name}: {m}"))
    except LabError as err:
        write_atomic(path, raw)  # no way out written: the spec as it was
        ui.err_console.print(f"{lab.rel(path)} is as it was")
        err.extra.update(result)  # --json: one document, the error with what add did
        raise
    result["extras"] = spec.extras
    result["lock"] = res.as_dict()
    ui.err_console.print(f"{lab.rel(res.path)}: " + (_changes(res) or "written"))
    if not no_build:
        result["build"] = _build_edited(e, lab, spec, explain=False).as_dict()
    if as_json:
        ui.dump_json(result)


@click.command()
@click.argument("names", nargs=-1)
@click.option("--registry", metavar="HOST[:PORT][/PREFIX]",
              help="Where to push (default: registry: in labctl.yaml).")
@json_option
@lab_option
@friendly
def push(names: tuple[str, ...], registry: str | None, as_json: bool, lab_dir: str | None
         ) -> None:
    """Push lab images (default: every current one) to a registry, for other machines."""
    lab = load(lab_dir)
    check_registry(lab, registry)
    e = engine(lab)
    pushed = do_push(e, lab, built(e, lab, names), registry, _upload_bar)
    if as_json:
        ui.dump_json([p.as_dict() for p in pushed])
        return
    ui.table("pushed", ["lab", "image", "digest"],
             [[p.name, p.ref, p.digest[:19]] for p in pushed])


@contextmanager
def _upload_bar() -> Iterator[Callable[[str, int, int | None], None]]:
    """A progress bar per layer on stderr, for one image's upload."""
    with ui.DownloadProgress() as bar:
        yield bar.update
