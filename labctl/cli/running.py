"""Run: `labctl run`, `shell`, `ps`, `logs`, `stop` and `check`. Every one of them acts on
this lab folder's containers and this user's; another lab of yours by its exact name."""

from __future__ import annotations

import sys

import click
from rich.text import Text

from labctl.cli import ui
from labctl.cli.common import engine, friendly, json_option, lab_option, load, maybe_lab
from labctl.errors import LabError
from labctl.runtime import containers
from labctl.runtime.check import CheckReport, check_lab
from labctl.runtime.plan import RunPlan, RunRequest
from labctl.runtime.run import make_plan, stop_labs
from labctl.runtime.run import run as do_run
from labctl.runtime.run import shell as do_shell

GPUS = click.option("--gpus", type=click.Choice(["auto", "all", "none"]), default="auto",
                    show_default=True,
                    help="auto: the GPU when the spec asks for one and the engine has one.")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--user", is_flag=True,
              help="Run as your own uid/gid: files on mounts are owned by you.")
@click.option("--src", "srcs", multiple=True, metavar="PATH[:DEST]",
              help="Mount your folder (default under the spec's workdir). Repeatable. On an"
                   " engine of another machine: remote:PATH, a folder there.")
@click.option("--sync", is_flag=True,
              help="Engine on another machine: copy the --src folders there, and back when"
                   " the lab stops.")
@click.option("--port", type=click.IntRange(1, 65535),
              help="Host port for Jupyter (default: the next free one).")
@click.option("--bind", help="Host address to publish ports on (default 127.0.0.1).")
@GPUS
@click.option("--no-compat", is_flag=True,
              help="Run without the spec's book-compatibility shims (LABCTL_COMPAT=off).")
@click.option("-d", "--detach", is_flag=True, help="Run in the background.")
@click.option("--keep", is_flag=True, help="Keep the container after it stops.")
@click.option("-v", "--verbose", is_flag=True)
@json_option
@lab_option
@friendly
def run(name: str, command: tuple[str, ...], user: bool, srcs: tuple[str, ...], sync: bool,
        port: int | None, bind: str | None, gpus: str, no_compat: bool, detach: bool,
        keep: bool, verbose: bool, as_json: bool, lab_dir: str | None) -> None:
    """Run lab NAME (JupyterLab, or COMMAND after --)."""
    lab = load(lab_dir)
    e = engine(lab)
    plan = make_plan(e, lab, name, RunRequest(
        user=user, srcs=srcs, command=command, gpus=gpus, bind=bind, port=port, sync=sync,
        compat=not no_compat, verbose=verbose))
    _tell(plan, name, verbose)
    sys.exit(do_run(e, plan, detach=detach, keep=keep, say=ui.err_console.print,
                    on_ready=lambda p: _as_json(p, name, detach) if as_json else None))


def _tell(plan: RunPlan, name: str, verbose: bool) -> None:
    """What `labctl run` says before the lab starts: warnings always, the rest with -v."""
    for note in plan.warnings:  # said always: exposure and a GPU lab falling back to CPU
        ui.err_console.print(f"warning: {note}")
    ui.err_console.print(f"{name}: {'GPU (' + plan.gpus + ')' if plan.gpus else 'CPU'}"
                         f", as {'you' if plan.user_mode == 'host' else plan.user_mode}")
    if verbose:
        for note in plan.notes:
            ui.err_console.print(f"note: {note}")
        for m in plan.mounts:
            ui.err_console.print(f"mount: {m.source} -> {m.target}")


def _as_json(plan: RunPlan, name: str, detach: bool) -> None:
    """`labctl run --json`: the lab, once it is ready."""
    ui.dump_json({"container": plan.name, "spec": name, "url": plan.url,
                  "tensorboard_url": plan.tensorboard_url,
                  "token_file": str(plan.token_file) if plan.token_file else None,
                  "gpu": plan.gpu_mode, "user": plan.user_mode,
                  "ports": {str(c): h for c, h in plan.ports.items()}, "detached": detach})
    sys.stdout.flush()


@click.command()
@click.argument("name")
@click.option("--user", is_flag=True, help="For a new lab: run as your own uid/gid.")
@lab_option
@friendly
def shell(name: str, user: bool, lab_dir: str | None) -> None:
    """A shell in running lab NAME (container or spec name), or in a new one."""
    lab = maybe_lab(lab_dir)
    sys.exit(do_shell(engine(lab), lab, name, user=user))


@click.command()
@json_option
@click.option("-a", "--all", "all_", is_flag=True, help="Include stopped labs.")
@click.option("--everywhere", is_flag=True,
              help="Your labs of every lab folder, not only this one.")
@lab_option
@friendly
def ps(as_json: bool, all_: bool, everywhere: bool, lab_dir: str | None) -> None:
    """Your running labs (of this lab folder), with their URLs."""
    lab = None if everywhere else maybe_lab(lab_dir)
    found = containers.listing(engine(lab), lab, all=all_)
    if as_json:
        ui.dump_json([r.as_dict() for r in found.rows])
        return
    where = "every lab folder" if lab is None else str(lab.root)
    ui.table(f"your labs in {where} (engine {found.engine})", ["name", "spec", "status",
             "url / ports"],
             [[r.name, r.spec, r.status, r.url or ", ".join(r.ports) or "-"]
              for r in found.rows])


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", default="200", show_default=True, help="Lines to show, or 'all'.")
@lab_option
@friendly
def logs(name: str, follow: bool, tail: str, lab_dir: str | None) -> None:
    """Output of lab NAME (also one kept with --keep that has stopped)."""
    if tail != "all" and not tail.isdigit():
        raise LabError(f"--tail {tail}: not a number",
                       id="cli.bad-tail", fix="--tail 100, or --tail all")
    c = containers.find(engine(), name, maybe_lab(lab_dir), stopped=True)
    if c is None:
        raise LabError(f"no lab named {name}", id="cli.no-such-lab", fix="see `labctl ps --all`")
    n = "all" if tail == "all" else int(tail)
    if follow:
        for chunk in c.logs(stream=True, follow=True, tail=n):
            sys.stdout.write(chunk.decode(errors="replace"))
    else:
        sys.stdout.write(c.logs(tail=n).decode(errors="replace"))


@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Stop every lab of this lab folder.")
@json_option
@lab_option
@friendly
def stop(names: tuple[str, ...], all_: bool, as_json: bool, lab_dir: str | None) -> None:
    """Stop labs NAMES (container or spec names) and remove their containers."""
    if not names and not all_:
        raise LabError("name a lab to stop, or pass --all",
                       id="cli.nothing-to-stop", fix="see `labctl ps`")
    lab = maybe_lab(lab_dir)
    stopped = stop_labs(engine(), lab, names, all_=all_, say=ui.err_console.print,
                        on_stopped=(lambda n: None) if as_json else
                        (lambda n: ui.console.print(f"stopped {n}")))
    if as_json:
        ui.dump_json(stopped.as_dict())


@click.command()
@click.argument("name")
@click.option("--only", multiple=True, help="Run only this check (repeatable).")
@GPUS
@json_option
@lab_option
@friendly
def check(name: str, only: tuple[str, ...], gpus: str, as_json: bool,
          lab_dir: str | None) -> None:
    """Run the checks spec NAME declares inside its image, as you, offline."""
    lab = load(lab_dir)
    e = engine(lab)
    with ui.status("checking") as update:
        report = check_lab(e, lab, name, list(only) or None, gpus,
                           on_start=lambda n: update(f"{name}: running check {n}"))
    if as_json:
        ui.dump_json([r.as_dict() for r in report.results])
    else:
        _show_checks(report)
    sys.exit(1 if report.failed else 0)


_RESULT_COLOURS = {"pass": "green", "fail": "red", "timeout": "red"}


def _show_checks(report: CheckReport) -> None:
    """The lab's book-compatibility items (what its checks ran with), each check's result,
    and the end of each failed check's output."""
    name = report.spec
    if report.compat:
        ui.table(f"book compatibility of {name} (LABCTL_COMPAT=off or --no-compat: shims"
                 " off)", ["item", "serves", "how"],
                 [[c.item, "\n".join(c.serves), c.how] for c in report.compat])
    ui.table(f"checks of {name}", ["check", "result", "seconds"],
             [[r.name, Text(r.status, style=_RESULT_COLOURS[r.status]), f"{r.seconds:.1f}"]
              for r in report.results])
    for r in report.failed:
        ui.console.print(Text(f"--- output of {r.name} (last 40 lines) ---", style="bold"))
        ui.console.print(Text("\n".join(r.output.splitlines()[-40:])))
