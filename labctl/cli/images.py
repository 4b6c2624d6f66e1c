"""Build: `labctl list`, `labctl render` and `labctl build`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from labctl.cli.common import built, engine, friendly, json_option, lab_option, load
from labctl.errors import LabError

if TYPE_CHECKING:
    from labctl.config.lab import Lab
    from labctl.config.spec import ImageSpec

BUILDER = click.option("--builder", type=click.Choice(["auto", "classic", "buildkit"]),
                       default=None, help="BuildKit (the docker CLI) or the docker SDK's"
                       " classic builder; default: the lab's builder setting, else auto.")


@click.command("list")
@json_option
@lab_option
@friendly
def list_(as_json: bool, lab_dir: str | None) -> None:
    """The lab's image specs and the state of their images."""
    from labctl.cli import ui
    from labctl.image.listing import list_specs

    lab = load(lab_dir)
    rows = list_specs(lab)
    if as_json:
        ui.dump_json(rows)
        return
    ui.table(
        f"lab {lab.root}",
        ["spec", "image", "state", "lock", "torch", "gpu", "description"],
        [[r["name"], r["tag"], r["state"], r["lock"], r["torch"] or "-", r["gpu"] or "-",
          r["description"]] for r in rows],
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
    from dataclasses import replace

    from labctl.cli import ui
    from labctl.image.render import render as do_render

    lab = load(lab_dir)
    ctx = do_render(lab, lab.spec(name))
    if builder == "buildkit":
        ctx = replace(ctx, dockerfile=ctx.buildkit_dockerfile, files={
            **ctx.files, "Dockerfile": ctx.buildkit_dockerfile.encode()})
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
    from labctl.cli import ui
    from labctl.config import validators
    from labctl.image.build import BuildOptions
    from labctl.image.build import build as do_build
    from labctl.image.render import render as do_render
    from labctl.lock.policy import lock_policy

    if tag and len(names) > 1:
        raise LabError("--tag takes one spec name",
                       id="cli.tag-many-specs", fix="build one spec at a time with --tag")
    if tag:
        try:  # before the build, not after minutes of it
            validators.image_ref(tag)
        except ValueError as e:
            raise LabError(f"--tag: {e}",
                           id="cli.bad-tag", fix="e.g. --tag labctl/d2l:mine") from None
    lab = load(lab_dir)
    contexts = [do_render(lab, lab.spec(n)) for n in names]  # validate all before building
    for warning in lock_policy(lab, contexts, locked):  # --locked: missing/stale is an error
        ui.err_console.print(warning if warning.startswith(" ") else f"warning: {warning}")
    e = engine(lab)
    results = []
    for ctx in contexts:
        image_tag = tag or lab.image_tag(ctx.spec.name)
        with ui.BuildProgress(ctx.spec.name, progress,
                              ui.err_console if as_json else None) as show:
            try:
                res = do_build(e, lab, ctx, image_tag, BuildOptions(
                    nocache=no_cache, pull=pull, force=force, builder=builder), show)
            except LabError as err:  # a conflict: with the ways out
                from labctl.lock.resolve import explain_conflict

                raise explain_conflict(e, lab, ctx.spec, err, "\n".join(err.details)
                                       ) from None
        results.append(res)
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
    if as_json:
        ui.dump_json([r.as_dict() for r in results])


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
    from labctl.cli import ui
    from labctl.config.edit import add_to_spec, check_packages
    from labctl.config.safewrite import write_atomic
    from labctl.lock import conflicts

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
    try:
        _lock_and_build(lab, name, after, no_build, result)
    except conflicts.ConflictError as c:
        # The spec goes back as it was (it would not build), and the fix adds them again
        # with the way out the learner picks.
        write_atomic(path, raw)
        c.fix = (f"{lab.rel(path)} is as it was; `labctl add {name} {' '.join(packages)}"
                 " --resolve` adds them with way 1 (`--resolve=N` way N), locks and builds"
                 if c.advice.ways else c.fix)
        c.extra.update(result)  # --json: what add did before the conflict, too
        raise
    if as_json:
        ui.dump_json(result)


def _lock_and_build(lab: Lab, name: str, spec: ImageSpec, no_build: bool,
                    result: dict[str, object]) -> None:
    """`labctl add` after the edit: the lock again (when the spec has one), then the
    build; a conflict on the way is a ConflictError with its ways out."""
    from labctl.cli import ui
    from labctl.config import lockfile
    from labctl.image.build import build as do_build
    from labctl.image.render import render as do_render
    from labctl.lock.resolve import explain_conflict
    from labctl.lock.resolve import lock as do_lock

    say = ui.err_console.print
    e = engine(lab)
    if lockfile.read_lock(lockfile.lock_path(spec, lab.images_dir), name) is not None:
        res = do_lock(e, lab, spec)
        result["lock"] = res.as_dict()
        say(f"{lab.rel(res.path)}: " + (", ".join(
            f"{c.package} {c.old or '-'} -> {c.new}" for c in res.changes) or "no change"))
    if not no_build:
        ctx = do_render(lab, spec)
        with ui.BuildProgress(name, "auto", ui.err_console) as show:
            try:
                built = do_build(e, lab, ctx, lab.image_tag(name), on_event=show)
            except LabError as err:
                raise explain_conflict(e, lab, spec, err, "\n".join(err.details)) from None
        result["build"] = built.as_dict()
        say(f"built {built.tag} in {built.seconds:.0f}s ({built.cached_steps} of"
            f" {built.steps} steps from cache)")


def _no_such_way(way: int, ways: int) -> LabError:
    """`labctl add --resolve=N` with N past the ways out found."""
    return LabError(f"--resolve={way}: there are {ways} ways out", id="cli.no-such-way",
                    fix=f"pick one of 1..{ways}")


def _resolve_and_build(lab: Lab, name: str, spec: ImageSpec, raw: bytes, way: int,
                       no_build: bool, as_json: bool, result: dict[str, object]) -> None:
    """`labctl add --resolve`: lock ``spec``; when its packages conflict, write way out
    ``way`` into images/NAME.yaml (its other lines and comments kept) and lock again; then
    build (the layers that did not change come from the cache). ``raw`` is the spec file
    before `add` touched it: it goes back when no way out can be written."""
    from labctl.cli import ui
    from labctl.config import yamlfile
    from labctl.config.safewrite import write_atomic
    from labctl.image.build import build as do_build
    from labctl.image.render import render as do_render
    from labctl.lock import conflicts
    from labctl.lock.resolve import lock as do_lock

    say = ui.err_console.print
    path = lab.images_dir / f"{name}.yaml"
    e = engine(lab)
    try:
        with ui.status(f"locking {name}") as update:
            try:
                res = do_lock(e, lab, spec, say=lambda m: update(f"{name}: {m}"))
            except conflicts.ConflictError as c:
                advice = c.advice
                if as_json:
                    result["advice"] = advice.as_dict()
                for line in [advice.conflict.headline(), *advice.lines()]:
                    say(line)
                if not advice.ways:
                    raise
                if way > len(advice.ways):
                    raise _no_such_way(way, len(advice.ways)) from None
                chosen = advice.ways[way - 1]
                text = path.read_bytes().decode("utf-8")
                new = conflicts.apply(yamlfile.parse(path, text), text, chosen)
                write_atomic(path, new)
                result["resolved"] = {"way": way, **chosen.as_dict()}
                say(f"way out {way}: {chosen.title()}: {lab.rel(path)} rewritten")
                update(f"{name}: locking again")
                spec = lab.spec(name)
                res = do_lock(e, lab, spec, say=lambda m: update(f"{name}: {m}"))
    except LabError:
        write_atomic(path, raw)  # no way out written: the spec as it was
        say(f"{lab.rel(path)} is as it was")
        if as_json:
            ui.dump_json(result)
        raise
    result["extras"] = spec.extras
    result["lock"] = res.as_dict()
    say(f"{lab.rel(res.path)}: " + (", ".join(f"{c.package} {c.old or '-'} -> {c.new}"
                                               for c in res.changes) or "written"))
    if not no_build:
        ctx = do_render(lab, spec)
        with ui.BuildProgress(name, "auto", ui.err_console) as show:
            built = do_build(e, lab, ctx, lab.image_tag(name), on_event=show)
        result["build"] = built.as_dict()
        say(f"built {built.tag} in {built.seconds:.0f}s ({built.cached_steps} of"
            f" {built.steps} steps from cache)")
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
    from labctl.cli import ui
    from labctl.config import validators
    from labctl.image.build import state
    from labctl.image.render import render as do_render

    lab = load(lab_dir)
    if registry:
        try:
            validators.registry(registry)
        except ValueError as e:
            raise LabError(f"--registry: {e}",
                           id="cli.bad-registry",
                           fix="e.g. --registry registry.example.edu/labs") from None
    elif not lab.settings.registry:
        raise LabError("no registry to push to",
                       id="cli.no-registry", fix="pass --registry HOST[:PORT][/PREFIX], or"
                       " set registry: in labctl.yaml")
    e = engine(lab)
    names = built(e, lab, names)
    rows = []
    for name in names:
        tag = lab.image_tag(name)
        if state(e, tag, do_render(lab, lab.spec(name)).digest) != "current":
            raise LabError(f"{tag} is not current: the registry would get an old {name}",
                           id="cli.image-not-current", fix=f"labctl build {name}, then push again")
        ref = lab.registry_ref(name, registry)
        assert ref is not None
        e.tag(e.image(tag).id, ref)
        with ui.DownloadProgress() as bar:
            digest = e.push(ref, bar.update)
        rows.append({"name": name, "ref": ref, "digest": digest})
    if as_json:
        ui.dump_json(rows)
        return
    ui.table("pushed", ["lab", "image", "digest"],
             [[r["name"], r["ref"], r["digest"][:19]] for r in rows])
