"""Set up: `labctl init` (a lab folder) and `labctl base bootstrap` (a base image)."""

from __future__ import annotations

from pathlib import Path

import click

from labctl.cli import ui
from labctl.cli.common import engine, friendly, json_option, maybe_lab
from labctl.config.lab import init_lab
from labctl.image import base as base_image


@click.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@json_option
@friendly
def init(directory: str, as_json: bool) -> None:
    """Create a lab in DIRECTORY from the shipped defaults (never overwrites a file)."""
    results = init_lab(Path(directory))
    if as_json:
        ui.dump_json({"lab": str(Path(directory).resolve()),
                      "files": [{"path": str(p), "written": w} for p, w in results]})
        return
    for path, written in results:
        ui.console.print(("created  " if written else "kept     ") + str(path))
    ui.console.print(f"next: cd {directory} && labctl list && labctl build d2l")


@click.group()
def base() -> None:
    """Base images: make one from a Debian mirror when no registry answers."""


@base.command("bootstrap")
@click.argument("image", default="debian:bookworm")
@click.option("--suite", help="Debian suite (default: the image's tag, else bookworm).")
@click.option("--mirror", default=None,
              help="Debian mirror URL (default: the lab's apt_mirror, LABCTL_APT_MIRROR,"
                   " deb.debian.org).")
@click.option("--force", is_flag=True, help="Replace an existing image of that name.")
@json_option
@friendly
def base_bootstrap(image: str, suite: str | None, mirror: str | None, force: bool,
                   as_json: bool) -> None:
    """Make base IMAGE from a Debian mirror (no registry needed)."""
    e = engine()
    res = base_image.present(e, image, force)
    if res is None:
        lab = maybe_lab(None)  # only now: an image kept needs no lab folder read
        mirror = base_image.pick_mirror(mirror, lab.settings.network.apt_mirror if lab else None)
        with ui.status(f"bootstrapping {image}") as update:
            res = base_image.make(e, image, suite, mirror,
                                  lambda line: update(f"{image}: {line[:100]}"))
    if as_json:
        ui.dump_json(res.as_dict())
    elif res.status == "present":
        ui.console.print(f"{image} is already in the engine (use --force to rebuild it)")
    else:
        ui.console.print(f"{image} is ready ({res.image_id[:19]})")
