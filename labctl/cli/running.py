"""Run: `labctl run`, `shell`, `ps`, `logs`, `stop` and `check`. Every one of them acts on
this lab folder's containers and this user's; another lab of yours by its exact name."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from labctl.cli.common import engine, friendly, json_option, lab_option, load, maybe_lab
from labctl.errors import LabError

if TYPE_CHECKING:
    from labctl.runtime.plan import RunPlan

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
    from labctl.cli import ui
    from labctl.runtime.plan import RunRequest
    from labctl.runtime.run import make_plan
    from labctl.runtime.run import run as do_run

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
    from labctl.cli import ui

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
    from labctl.cli import ui

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
    from labctl.runtime import containers
    from labctl.runtime.plan import RunRequest
    from labctl.runtime.run import make_plan
    from labctl.runtime.run import run as do_run

    lab = maybe_lab(lab_dir)
    e = engine(lab)
    c = containers.find(e, name, lab)
    if c is not None:
        env = dict(x.split("=", 1) for x in c.attrs["Config"].get("Env") or [])
        uid = env.get("LABCTL_UID") or "1000"
        who = "0:0" if uid == "0" else f"{uid}:{env.get('LABCTL_GID', uid)}"
        home = "/root" if uid == "0" else "/home/lab"
        sys.exit(e.exec_cli(c, ["bash", "-l"], who, c.attrs["Config"]["WorkingDir"] or "/",
                            {"HOME": home}))
    if lab is None:
        raise LabError(f"no running lab named {name}, and no lab folder to start one from",
                       id="cli.no-running-lab", fix="see `labctl ps`, or run this in a lab folder")
    plan = make_plan(e, lab, name, RunRequest(user=user, command=("bash", "-l")))
    sys.exit(do_run(e, plan, detach=False, keep=False, say=lambda m: None))


@click.command()
@json_option
@click.option("-a", "--all", "all_", is_flag=True, help="Include stopped labs.")
@click.option("--everywhere", is_flag=True,
              help="Your labs of every lab folder, not only this one.")
@lab_option
@friendly
def ps(as_json: bool, all_: bool, everywhere: bool, lab_dir: str | None) -> None:
    """Your running labs (of this lab folder), with their URLs."""
    from labctl import labels
    from labctl.cli import ui
    from labctl.engine import endpoint
    from labctl.runtime import containers
    from labctl.runtime.run import token_of

    lab = None if everywhere else maybe_lab(lab_dir)
    e = engine(lab)
    rows = []
    for c in containers.mine(e, lab, all=all_):
        ports = c.attrs.get("NetworkSettings", {}).get("Ports") or {}
        published = [f"{b['HostIp']}:{b['HostPort']}->{p}" for p, bs in ports.items()
                     for b in bs or []]
        url = c.labels.get(labels.URL)
        token = token_of(c) if url else None
        rows.append({"name": c.name, "spec": c.labels.get(labels.SPEC), "status": c.status,
                     "url": f"{url}?token={token}" if url and token else url,
                     "ports": published, "lab": c.labels.get(labels.LAB),
                     "image": (c.image.tags or [c.image.id])[0] if c.image else "",
                     "engine": endpoint()[0]})
    if as_json:
        ui.dump_json(rows)
        return
    where = "every lab folder" if lab is None else str(lab.root)
    ui.table(f"your labs in {where} (engine {endpoint()[0]})", ["name", "spec", "status",
             "url / ports"],
             [[r["name"], r["spec"], r["status"], r["url"] or ", ".join(r["ports"]) or "-"]
              for r in rows])


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", default="200", show_default=True, help="Lines to show, or 'all'.")
@lab_option
@friendly
def logs(name: str, follow: bool, tail: str, lab_dir: str | None) -> None:
    """Output of lab NAME (also one kept with --keep that has stopped)."""
    from labctl.runtime import containers

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
    from labctl import labels
    from labctl.cli import ui
    from labctl.runtime import containers, remote
    from labctl.runtime.plan import TOKEN_IN_CONTAINER
    from labctl.runtime.run import forget_token_file

    if not names and not all_:
        raise LabError("name a lab to stop, or pass --all",
                       id="cli.nothing-to-stop", fix="see `labctl ps`")
    lab = maybe_lab(lab_dir)
    e = engine()
    if all_ and lab is None:
        raise LabError("--all stops the labs of a lab folder, and this is none",
                       id="cli.no-lab-folder",
                       fix="run it in a lab folder (or pass --lab DIR), or name the labs")
    targets = containers.mine(e, lab, all=True) if all_ else []
    for n in names:
        c = containers.find(e, n, lab, stopped=True)
        if c is None:
            raise LabError(f"no lab named {n}", id="cli.no-such-lab", fix="see `labctl ps --all`")
        targets.append(c)
    stopped = []
    for c in targets:
        e.stop_container(c)
        e.remove_container(c)  # then its --sync volumes, no longer in use, come back
        remote.sync_back(e, c.attrs["Config"]["Image"], remote.syncs_of(c),
                         ui.err_console.print)
        for m in c.attrs.get("Mounts") or []:  # its token file goes with it
            if m.get("Destination") == TOKEN_IN_CONTAINER:
                forget_token_file((c.labels or {}).get(labels.LAB, ""), m["Source"])
        stopped.append(c.name)
        if not as_json:
            ui.console.print(f"stopped {c.name}")
    if as_json:
        ui.dump_json({"stopped": stopped})


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
    from rich.text import Text

    from labctl.cli import ui
    from labctl.runtime.check import run_checks

    lab = load(lab_dir)
    e = engine(lab)
    with ui.status("checking") as update:
        results = run_checks(e, lab, name, list(only) or None, gpus,
                             on_start=lambda n: update(f"{name}: running check {n}"))
    failed = [r for r in results if r.status != "pass"]
    if as_json:
        ui.dump_json([r.__dict__ for r in results])
    else:
        spec = lab.spec(name)
        if spec.compat:  # what of the books this lab makes run, and how
            from labctl.config.spec import compat_items

            items = compat_items()
            ui.table(f"book compatibility of {name} (LABCTL_COMPAT=off or --no-compat: shims"
                     " off)", ["item", "serves", "how"],
                     [[c, "\n".join(items[c].serves), ", ".join(items[c].pip) or
                       f"shim {items[c].shim}"] for c in spec.compat])
        colour = {"pass": "green", "fail": "red", "timeout": "red"}
        ui.table(f"checks of {name}", ["check", "result", "seconds"],
                 [[r.name, Text(r.status, style=colour[r.status]), f"{r.seconds:.1f}"]
                  for r in results])
        for r in failed:
            ui.console.print(Text(f"--- output of {r.name} (last 40 lines) ---", style="bold"))
            ui.console.print(Text("\n".join(r.output.splitlines()[-40:])))
    sys.exit(1 if failed else 0)
