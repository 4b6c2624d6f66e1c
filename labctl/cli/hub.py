"""`labctl hub write|up|down|status`: a JupyterHub for a class on one Docker host or a
swarm, one profile per lab (labctl/hub/)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from labctl.cli import ui
from labctl.cli.common import built, engine, friendly, json_option, lab_option, load
from labctl.hub import deploy, files

if TYPE_CHECKING:
    from labctl.config.lab import Lab


@click.group(name="hub")
def hub_group() -> None:
    """A JupyterHub for several learners on this Docker host, one profile per lab."""


def _settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.argument("names", nargs=-1),
        click.option("--bind", default="127.0.0.1", show_default=True,
                     help="Where learners reach the hub (0.0.0.0: every interface)."),
        click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65533),
                     help="The hub's port (PORT+1: the proxy's API, PORT+2: the hub's API)."),
        click.option("--auth", type=click.Choice(["native", "pam"]), default="native",
                     show_default=True, help="native: learners sign up and an admin approves"
                     " each; pam: this machine's accounts."),
        click.option("--admin", "admins", multiple=True, metavar="NAME",
                     help="A hub admin (approves sign-ups); repeat for more."),
        click.option("--pam-group", help="With --auth pam: only this group's members."),
        click.option("--cull-idle", default=3600, show_default=True, type=click.IntRange(60),
                     help="Seconds before an idle server is stopped."),
        click.option("--swarm", is_flag=True, help="SwarmSpawner on a Docker Swarm whose"
                     " manager is this engine; the images go to labctl.yaml's registry:."),
        click.option("--python", type=click.Path(exists=True, dir_okay=False),
                     help="The Python that runs the hub (default: .labctl/hub/venv, made"
                          " from the pinned requirements)."),
        json_option,
        lab_option,
    ]):
        fn = opt(fn)
    return fn


def _write(names: tuple[str, ...], opts: dict[str, Any], lab_dir: str | None,
           make_venv: bool) -> tuple[Lab, deploy.Written, Path | None]:
    """`hub write` and `hub up`: the settings checked, the hub written; the lab, what was
    written and the hub's python (``make_venv``: made when --python names none)."""
    s = files.HubSettings(bind=opts["bind"], port=opts["port"], auth=opts["auth"],
                          admins=list(opts["admins"]), pam_group=opts["pam_group"],
                          cull_idle=opts["cull_idle"], swarm=opts["swarm"])
    files.check_settings(s)  # before anything is built
    lab = load(lab_dir)
    files.check_swarm(s, lab.settings.registry)
    if make_venv:
        deploy.refuse_running(lab)
    e = engine(lab)
    names = built(e, lab, names)
    python = deploy.hub_python(lab, opts["python"], make_venv, ui.err_console.print)
    return lab, deploy.write(e, lab, names, s, python, ui.err_console.print), python


@hub_group.command(name="write")
@_settings_options
@friendly
def write(names: tuple[str, ...], as_json: bool, lab_dir: str | None, **opts: Any) -> None:
    """Write the hub for labs NAMES (default: every built lab): config, images, network."""
    _, written, _ = _write(names, opts, lab_dir, make_venv=False)
    if as_json:
        ui.dump_json(written.as_dict())
        return
    ui.console.print(f"wrote {written.folder}: {', '.join(written.profiles)}")
    ui.console.print("next: labctl hub up")


@hub_group.command(name="up")
@_settings_options
@friendly
def up(names: tuple[str, ...], as_json: bool, lab_dir: str | None, **opts: Any) -> None:
    """Write the hub for labs NAMES and start it in the background."""
    lab, written, python = _write(names, opts, lab_dir, make_venv=True)
    assert python is not None  # make_venv: --python, else the venv it made
    hub = deploy.up(lab, written.doc, python)
    if as_json:
        ui.dump_json(hub.as_dict())
        return
    ui.console.print(f"the hub runs (pid {hub.pid}): {hub.url}  log: {hub.log}")
    if written.doc["auth"] == "native":
        ui.console.print(f"sign up as {', '.join(written.doc['admins'])} first (the admin), then"
                         " approve each learner at /hub/authorize")


@hub_group.command(name="down")
@lab_option
@friendly
def down(lab_dir: str | None) -> None:
    """Stop the hub and the learners' servers (their work stays, in their volumes)."""
    lab = load(lab_dir)
    ran = deploy.down(engine(lab), lab)
    ui.console.print("the hub stopped" if ran else "no hub runs for this lab folder")


@hub_group.command(name="status")
@json_option
@lab_option
@friendly
def status(as_json: bool, lab_dir: str | None) -> None:
    """Whether the hub runs, where, and the learners' servers."""
    lab = load(lab_dir)
    st = deploy.status(engine(lab), lab)
    if as_json:
        ui.dump_json(st.as_dict())
        return
    ui.console.print(f"hub: running (pid {st.pid}) at {st.url}" if st.running
                     else "hub: not running")
    for s in st.servers:
        ui.console.print(f"  {s['name']}  {s['status']}  {s['image']}")
