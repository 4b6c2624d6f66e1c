"""VS Code and Compose: `labctl devcontainer` and `labctl compose`, front doors to the
same labs as `labctl run`, generated from the same run plan."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import click
import yaml

from labctl.cli import ui
from labctl.cli.common import built, engine, friendly, json_option, lab_option, load
from labctl.config.safewrite import write_atomic
from labctl.errors import LabError
from labctl.export import compose as cp
from labctl.export import devcontainer as dc
from labctl.export import k8s as kube
from labctl.gpu.access import gpu_mode
from labctl.runtime.plan import RunRequest
from labctl.runtime.run import (
    compose_plans,
    create_host_dirs,
    env_token_file,
    kept_token_file,
    make_plan,
)

if TYPE_CHECKING:
    from labctl.config.lab import Lab
    from labctl.engine import Engine


def _local_engine(lab: Lab, what: str) -> Engine:
    """The engine, refused when it is another machine's: the file names this machine's
    folders and ports."""
    e = engine(lab)
    if not e.is_local():
        raise LabError(f"{what} describes an engine on this machine; this one is another"
                       " machine's",
                       id="cli.engine-not-local", fix="unset DOCKER_HOST (or `docker context use"
                       " default`) to export; on the server, run `labctl run` or export there")
    return e


@click.command()
@click.argument("name")
@click.option("--src", default=".", show_default=True,
              type=click.Path(exists=True, file_okay=False),
              help="The folder VS Code opens: mounted as the lab's workspace.")
@click.option("--single", is_flag=True,
              help="Write .devcontainer/devcontainer.json (VS Code's default) instead of"
                   " .devcontainer/NAME/devcontainer.json.")
@json_option
@lab_option
@friendly
def devcontainer(name: str, src: str, single: bool, as_json: bool, lab_dir: str | None
                 ) -> None:
    """Write a devcontainer.json for lab NAME: VS Code opens SRC inside the lab, as you."""
    lab = load(lab_dir)
    e = _local_engine(lab, "a devcontainer.json")
    folder = Path(src).resolve()
    plan = make_plan(e, lab, name, RunRequest(
        user=True, srcs=(str(folder),), gpus="none",
        token_file=kept_token_file(lab, f"devcontainer-{name}.token")))
    written = dc.export(plan, lab.spec(name), folder, single, lambda: gpu_mode(e),
                        create_host_dirs)
    if as_json:
        ui.dump_json(written.as_dict())
        return
    ui.console.print(f"{written.file}: {'; '.join(written.changes) or 'unchanged'}")
    ui.console.print(f"next: open {folder} in VS Code and run 'Dev Containers: Reopen in"
                     " Container'")


@click.command()
@click.argument("names", nargs=-1)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Where to write it (default: compose.yaml in the lab folder).")
@json_option
@lab_option
@friendly
def compose(names: tuple[str, ...], output: str | None, as_json: bool, lab_dir: str | None
            ) -> None:
    """Write a Compose file with one service per lab (default: every built lab)."""
    lab = load(lab_dir)
    e = _local_engine(lab, "a Compose file")
    names = built(e, lab, names)
    lab.state_dir()  # .labctl, private
    env_file = env_token_file(lab.root / cp.ENV_FILE)
    written = cp.export(lab, compose_plans(e, lab, names),
                        Path(output).resolve() if output else None, env_file)
    if as_json:
        ui.dump_json(written.as_dict())
        return
    ui.console.print(f"wrote {written.file}: {', '.join(written.services) or 'no services'}"
                     f" (the token: {written.env_file})")


@click.group(name="export")
def export_group() -> None:
    """Write the labs for a cluster: Kubernetes manifests, a JupyterHub profile list."""


def _images(lab: Lab, names: tuple[str, ...], registry: str | None) -> dict[str, str]:
    """The image each cluster node pulls: REGISTRY/NAME:latest (`labctl push`), else the
    local tag (which a cluster can only use when its nodes have the image)."""
    return {n: f"{registry.rstrip('/')}/{n}:latest" if registry else lab.image_tag(n)
            for n in names}


def _write(docs: list[dict], output: str | None, private: bool = False) -> None:
    """The documents to ``output`` (``private``: 0600, it holds a secret), else stdout."""
    text = yaml.safe_dump_all(docs, sort_keys=False)
    if output:
        write_atomic(Path(output), text, private=private)
        ui.err_console.print(f"wrote {output}" + (" (0600: it holds the token)" if private
                                                  else ""))
    else:
        ui.console.print(text, end="", markup=False, highlight=False, soft_wrap=True)


@export_group.command(name="k8s")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
@click.option("--registry", metavar="HOST[:PORT][/PREFIX]",
              help="Where the cluster pulls the image from (see `labctl push`).")
@click.option("--namespace", help="The namespace of every object.")
@lab_option
@friendly
def k8s(name: str, output: str | None, registry: str | None, namespace: str | None,
        lab_dir: str | None) -> None:
    """Kubernetes manifests for lab NAME: Deployment, Service, claims, token Secret."""
    lab = load(lab_dir)
    spec = lab.spec(name)
    docs = kube.manifests(kube.kube_lab(lab, spec, _images(lab, (name,), registry)[name]),
                          secrets.token_hex(24), namespace)
    if not registry:
        ui.err_console.print("warning: no --registry: the cluster's nodes must already have"
                             f" {lab.image_tag(name)}")
    secret = any(d["kind"] == "Secret" for d in docs)
    if secret:
        ui.err_console.print("note: the Secret holds a new Jupyter token: keep the file out"
                             " of git")
    _write(docs, output, private=secret)


@export_group.command(name="jupyterhub")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
@click.option("--registry", metavar="HOST[:PORT][/PREFIX]",
              help="Where the cluster pulls the images from (see `labctl push`).")
@lab_option
@friendly
def jupyterhub(names: tuple[str, ...], output: str | None, registry: str | None,
               lab_dir: str | None) -> None:
    """A zero-to-jupyterhub values snippet: one profile per lab in NAMES."""
    lab = load(lab_dir)
    images = _images(lab, names, registry)
    labs = []
    for n in names:
        spec = lab.spec(n)
        if not any(str(p).lower().startswith("jupyterhub") for p in spec.lab_packages):
            ui.err_console.print(f"warning: {n} has no jupyterhub package, which JupyterHub"
                                 " starts the server with: add jupyterhub to its pip:"
                                 " (the hub's own version)")
        labs.append(kube.kube_lab(lab, spec, images[n]))
    _write([kube.jupyterhub_values(labs)], output)
