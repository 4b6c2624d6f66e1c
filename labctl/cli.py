"""The click command line: a thin layer over spec, render, build, run and doctor."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from labctl import __version__
from labctl.errors import LabError


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print LabErrors as one screen (no traceback) and exit with their code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from labctl import ui

        try:
            return fn(*args, **kwargs)
        except LabError as e:
            ui.error(e)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            ui.err_console.print("interrupted")
            sys.exit(130)
        except OSError as e:  # a folder labctl cannot read or write: say which, and the fix
            where = e.filename or "a file"
            ui.error(LabError(
                f"cannot use {where}: {e.strerror or e}",
                fix=f"check that the folder exists and is yours: `ls -ld {where}`; if a "
                f"container left it owned by root: `sudo chown -R $(id -u):$(id -g) {where}`",
            ))
            sys.exit(1)
        except Exception as e:  # an engine error outside engine.py's own translation
            from labctl.engine import explain, is_engine_error

            if not is_engine_error(e):
                raise
            ui.error(explain(e))
            sys.exit(1)

    return wrapper


lab_option = click.option(
    "--lab", "lab_dir", envvar="LABCTL_LAB", type=click.Path(file_okay=False),
    help="Lab folder (default: found from the working directory upward).",
)


def _lab(lab_dir: str | None):  # noqa: ANN202 - keeps imports lazy for a fast CLI
    from labctl.lab import load_lab

    return load_lab(lab_dir)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labctl")
def cli() -> None:
    """Build and run Docker learning labs (d2l, fastai, YOLO) as your own user."""


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@friendly
def init(directory: str) -> None:
    """Create a lab in DIRECTORY from the shipped defaults (never overwrites a file)."""
    from labctl import ui
    from labctl.lab import init_lab

    for path, written in init_lab(Path(directory)):
        ui.console.print(("created  " if written else "kept     ") + str(path))
    ui.console.print(f"next: cd {directory} && labctl list && labctl build d2l")


@cli.command()
@click.argument("name")
@click.option("--context", "context_dir", type=click.Path(file_okay=False),
              help="Write the whole build context to this folder.")
@lab_option
@friendly
def render(name: str, context_dir: str | None, lab_dir: str | None) -> None:
    """Print the Dockerfile rendered from spec NAME."""
    from labctl.render import render as do_render

    lab = _lab(lab_dir)
    ctx = do_render(lab, lab.spec(name))
    if context_dir:
        ctx.write(Path(context_dir))
        click.echo(f"wrote {len(ctx.files)} files to {context_dir} (hash {ctx.digest})", err=True)
    else:
        click.echo(ctx.dockerfile, nl=False)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@lab_option
@friendly
def list_(as_json: bool, lab_dir: str | None) -> None:
    """The lab's image specs and the state of their images."""
    from labctl import ui
    from labctl.listing import list_specs

    lab = _lab(lab_dir)
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


@cli.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--no-cache", is_flag=True, help="Rebuild every layer.")
@click.option("--pull/--no-pull", default=True, show_default=True,
              help="Pull the base image when it is missing.")
@click.option("--progress", type=click.Choice(["auto", "plain", "json"]), default="auto",
              show_default=True)
@click.option("--tag", help="Tag to give the image (default: labctl/NAME:latest).")
@click.option("--force", is_flag=True, help="Build even when the image is current.")
@click.option("--locked", is_flag=True,
              help="Fail unless every spec has a current lock file (images/NAME.lock), for CI.")
@lab_option
@friendly
def build(names: tuple[str, ...], no_cache: bool, pull: bool, progress: str, tag: str | None,
          force: bool, locked: bool, lab_dir: str | None) -> None:
    """Build the images of specs NAMES (a no-op for images that are current)."""
    from labctl import ui
    from labctl.build import build as do_build
    from labctl.engine import Engine
    from labctl.lock_commands import lock_policy
    from labctl.render import render as do_render

    if tag and len(names) > 1:
        raise LabError("--tag takes one spec name", fix="build one spec at a time with --tag")
    lab = _lab(lab_dir)
    contexts = [do_render(lab, lab.spec(n)) for n in names]  # validate all before building
    for warning in lock_policy(lab, contexts, locked):  # --locked: missing/stale is an error
        ui.err_console.print(warning if warning.startswith(" ") else f"warning: {warning}")
    engine = Engine.connect()
    for ctx in contexts:
        image_tag = tag or lab.image_tag(ctx.spec.name)
        with ui.BuildProgress(ctx.spec.name, progress) as show:
            res = do_build(engine, lab, ctx, image_tag, nocache=no_cache, pull=pull,
                           force=force, on_event=show)
        if progress == "json":
            ui.dump_json(res.__dict__)
        elif res.status == "current":
            ui.console.print(f"{res.tag} is current (hash {ctx.digest}): nothing to build")
        else:
            ui.console.print(
                f"built {res.tag} in {res.seconds:.0f}s: {res.steps} steps, "
                f"{res.cached_steps} from cache, {ui.human_size(res.size)}"
            )


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--user", is_flag=True,
              help="Run as your own uid/gid: files on mounts are owned by you.")
@click.option("--src", "srcs", multiple=True, metavar="PATH[:DEST]",
              help="Mount your folder (default under /workspace). Repeatable.")
@click.option("--port", type=int, help="Host port for Jupyter (default: the next free one).")
@click.option("--bind", help="Host address to publish ports on (default 127.0.0.1).")
@click.option("--gpus", type=click.Choice(["auto", "all", "none"]), default="auto",
              show_default=True)
@click.option("-d", "--detach", is_flag=True, help="Run in the background.")
@click.option("--keep", is_flag=True, help="Keep the container after it stops.")
@click.option("-v", "--verbose", is_flag=True)
@lab_option
@friendly
def run(name: str, command: tuple[str, ...], user: bool, srcs: tuple[str, ...],
        port: int | None, bind: str | None, gpus: str, detach: bool, keep: bool,
        verbose: bool, lab_dir: str | None) -> None:
    """Run lab NAME (JupyterLab, or COMMAND after --)."""
    from labctl import ui
    from labctl.engine import Engine
    from labctl.run import make_plan
    from labctl.run import run as do_run

    lab = _lab(lab_dir)
    engine = Engine.connect()
    plan = make_plan(engine, lab, name, user=user, srcs=list(srcs),
                     command=list(command) or None, gpus=gpus, bind=bind, port=port)
    for note in plan.warnings:  # said always: exposure and a GPU lab falling back to CPU
        ui.err_console.print(f"warning: {note}")
    if verbose:
        for note in plan.notes:
            ui.err_console.print(f"note: {note}")
        for m in plan.mounts:
            ui.err_console.print(f"mount: {m.source} -> {m.target}")
        plan.env["LABCTL_VERBOSE"] = "1"

    def say(msg: str) -> None:
        ui.err_console.print(msg)

    sys.exit(do_run(engine, plan, detach=detach, keep=keep, say=say))


@cli.command()
@click.argument("name")
@click.option("--user", is_flag=True, help="For a new lab: run as your own uid/gid.")
@lab_option
@friendly
def shell(name: str, user: bool, lab_dir: str | None) -> None:
    """A shell in running lab NAME (container or spec name), or in a new one."""
    from labctl.engine import Engine
    from labctl.run import find_lab_container, make_plan
    from labctl.run import run as do_run

    engine = Engine.connect()
    c = find_lab_container(engine, name)
    if c is not None:
        env = dict(e.split("=", 1) for e in c.attrs["Config"].get("Env") or [])
        uid = env.get("LABCTL_UID") or "1000"
        who = "0:0" if uid == "0" else f"{uid}:{env.get('LABCTL_GID', uid)}"
        home = "/root" if uid == "0" else "/home/lab"
        sys.exit(engine.exec_cli(c, ["bash", "-l"], who, c.attrs["Config"]["WorkingDir"] or "/",
                                 {"HOME": home}))
    lab = _lab(lab_dir)
    plan = make_plan(engine, lab, name, user=user, srcs=[], command=["bash", "-l"],
                     gpus="auto", bind=None, port=None)
    sys.exit(do_run(engine, plan, detach=False, keep=False, say=lambda m: None))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("-a", "--all", "all_", is_flag=True, help="Include stopped labs.")
@friendly
def ps(as_json: bool, all_: bool) -> None:
    """Running labs."""
    from labctl import ui
    from labctl.engine import Engine
    from labctl.run import lab_containers
    from labctl.runplan import LABEL_LAB, LABEL_SPEC, LABEL_URL

    rows = []
    for c in lab_containers(Engine.connect(), all=all_):
        ports = c.attrs.get("NetworkSettings", {}).get("Ports") or {}
        published = [f"{b['HostIp']}:{b['HostPort']}->{p}" for p, bs in ports.items()
                     for b in bs or []]
        rows.append({"name": c.name, "spec": c.labels.get(LABEL_SPEC), "status": c.status,
                     "url": c.labels.get(LABEL_URL), "ports": published,
                     "lab": c.labels.get(LABEL_LAB), "image": (c.image.tags or [c.image.id])[0]})
    if as_json:
        ui.dump_json(rows)
        return
    ui.table(None, ["name", "spec", "status", "url / ports"],
             [[r["name"], r["spec"], r["status"], r["url"] or ", ".join(r["ports"]) or "-"]
              for r in rows])


@cli.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", default="200", show_default=True, help="Lines to show, or 'all'.")
@friendly
def logs(name: str, follow: bool, tail: str) -> None:
    """Output of running lab NAME."""
    from labctl.engine import Engine
    from labctl.run import find_lab_container

    c = find_lab_container(Engine.connect(), name)
    if c is None:
        raise LabError(f"no running lab named {name}", fix="see `labctl ps`")
    if tail != "all" and not tail.isdigit():
        raise LabError(f"--tail {tail}: not a number", fix="--tail 100, or --tail all")
    n = "all" if tail == "all" else int(tail)
    if follow:
        for chunk in c.logs(stream=True, follow=True, tail=n):
            sys.stdout.write(chunk.decode(errors="replace"))
    else:
        sys.stdout.write(c.logs(tail=n).decode(errors="replace"))


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Stop every lab.")
@friendly
def stop(names: tuple[str, ...], all_: bool) -> None:
    """Stop labs NAMES (container or spec names) and remove their containers."""
    from labctl import ui
    from labctl.engine import Engine
    from labctl.run import find_lab_container, lab_containers

    engine = Engine.connect()
    if not names and not all_:
        raise LabError("name a lab to stop, or pass --all", fix="see `labctl ps`")
    targets = lab_containers(engine, all=True) if all_ else []
    for n in names:
        c = find_lab_container(engine, n)
        if c is None:
            raise LabError(f"no running lab named {n}", fix="see `labctl ps`")
        targets.append(c)
    for c in targets:
        engine.stop_container(c)
        engine.remove_container(c)
        ui.console.print(f"stopped {c.name}")


@cli.command()
@click.argument("name")
@click.option("--only", multiple=True, help="Run only this check (repeatable).")
@click.option("--gpus", type=click.Choice(["auto", "all", "none"]), default="auto",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@lab_option
@friendly
def check(name: str, only: tuple[str, ...], gpus: str, as_json: bool,
          lab_dir: str | None) -> None:
    """Run the checks spec NAME declares inside its image, as you, on the lab's volumes."""
    from rich.text import Text

    from labctl import ui
    from labctl.check import run_checks
    from labctl.engine import Engine

    lab = _lab(lab_dir)
    engine = Engine.connect()
    with ui.console.status("checking") as status:
        results = run_checks(engine, lab, name, list(only) or None, gpus,
                             on_start=lambda n: status.update(f"{name}: running check {n}"))
    failed = [r for r in results if r.status != "pass"]
    if as_json:
        ui.dump_json([r.__dict__ for r in results])
    else:
        colour = {"pass": "green", "fail": "red", "timeout": "red"}
        ui.table(f"checks of {name}", ["check", "result", "seconds"],
                 [[r.name, Text(r.status, style=colour[r.status]), f"{r.seconds:.1f}"]
                  for r in results])
        for r in failed:
            ui.console.print(Text(f"--- output of {r.name} (last 40 lines) ---", style="bold"))
            ui.console.print(Text("\n".join(r.output.splitlines()[-40:])))
    sys.exit(1 if failed else 0)


@cli.group()
def base() -> None:
    """Base images."""


@base.command("bootstrap")
@click.argument("image", default="debian:bookworm")
@click.option("--suite", help="Debian suite (default: the image's tag, else bookworm).")
@click.option("--mirror", default=None, help="Debian mirror URL.")
@click.option("--force", is_flag=True, help="Replace an existing image of that name.")
@friendly
def base_bootstrap(image: str, suite: str | None, mirror: str | None, force: bool) -> None:
    """Make base IMAGE from a Debian mirror (no registry needed)."""
    import os

    from labctl import ui
    from labctl.bootstrap import DEFAULT_MIRROR, bootstrap, check_mirror, suite_of
    from labctl.engine import Engine

    engine = Engine.connect()
    if engine.image(image) is not None and not force:
        ui.console.print(f"{image} is already in the engine (use --force to rebuild it)")
        return
    mirror = check_mirror(mirror or os.environ.get("LABCTL_APT_MIRROR") or _lab_mirror()
                          or DEFAULT_MIRROR)
    with ui.console.status(f"bootstrapping {image}") as status:
        image_id = bootstrap(engine, image, suite_of(image, suite), mirror,
                             lambda line: status.update(f"{image}: {line[:100]}"))
    ui.console.print(f"{image} is ready ({image_id[:19]})")


def _lab_mirror() -> str | None:
    """The apt mirror of the lab we are in, if any (a learner who set one uses it here too)."""
    from labctl.lab import load_lab

    try:
        return load_lab().settings.network.apt_mirror
    except LabError:
        return None


def _register() -> None:
    """Commands that live beside their feature module."""
    from labctl.doctor.command import doctor
    from labctl.lock_commands import diff, freeze, lock

    cli.add_command(doctor)
    for command in (lock, freeze, diff):
        cli.add_command(command)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Ctrl-C, and a closed terminal or `kill`, stop and remove a foreground lab the same
    # way, also when the shell started labctl with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    _register()
    cli(prog_name="labctl")
