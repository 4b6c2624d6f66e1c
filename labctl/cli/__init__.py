"""The click command line: a thin layer over config, image, runtime, lock and doctor.

Every command is in one table here, under the section of what a learner does with it, so
`labctl --help` reads as the order of a learner's day: set up, build, run, reproduce,
move, diagnose. A command's module is imported only when that command runs (as pip's
commands_dict): `labctl --help` and every command import only what they use, and the
command modules import at their top, not inside their bodies.
"""

from __future__ import annotations

import importlib
import signal

import click

from labctl import __version__
from labctl.cli import _startup  # noqa: F401  (first: see it)

# (section, ((name, "module:attribute" under labctl.cli, the summary --help shows), ...)).
# tests/test_layout.py holds each summary to the first line of the command's own help.
SECTIONS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Set up", (
        ("init", "setup:init",
         "Create a lab in DIRECTORY from the shipped defaults (never overwrites a file)."),
        ("base", "setup:base",
         "Base images: make one from a Debian mirror when no registry answers."),
        ("data", "data:data", "Datasets and weights: what is here, fetch them, import them,"
         " find them in notebooks."),
    )),
    ("Build", (
        ("list", "images:list_", "The lab's image specs and the state of their images."),
        ("render", "images:render", "Print the Dockerfile rendered from spec NAME."),
        ("build", "images:build",
         "Build the images of specs NAMES (a no-op for images that are current)."),
        ("add", "images:add", "Keep PACKAGES in lab NAME: its spec's extras, its lock, a"
         " rebuild of that layer."),
    )),
    ("Run", (
        ("run", "running:run", "Run lab NAME (JupyterLab, or COMMAND after --)."),
        ("shell", "running:shell",
         "A shell in running lab NAME (container or spec name), or in a new one."),
        ("ps", "running:ps", "Your running labs (of this lab folder), with their URLs."),
        ("logs", "running:logs",
         "Output of lab NAME (also one kept with --keep that has stopped)."),
        ("stop", "running:stop",
         "Stop labs NAMES (container or spec names) and remove their containers."),
        ("check", "running:check",
         "Run the checks spec NAME declares inside its image, as you, offline."),
        ("devcontainer", "export:devcontainer", "Write a devcontainer.json for lab NAME:"
         " VS Code opens SRC inside the lab, as you."),
        ("compose", "export:compose",
         "Write a Compose file with one service per lab (default: every built lab)."),
        ("export", "export:export_group", "Write the labs for a cluster: Kubernetes"
         " manifests, a JupyterHub profile list."),
        ("hub", "hub:hub_group",
         "A JupyterHub for several learners on this Docker host, one profile per lab."),
    )),
    ("Reproduce", (
        ("lock", "reproduce:lock", "Write images/NAME.lock for specs NAMES (default: all):"
         " exact versions and hashes."),
        ("freeze", "reproduce:freeze", "The Python packages image NAME really holds (a"
         " spec's image, or any image)."),
        ("diff", "reproduce:diff", "Compare the packages of A and B: lock files, specs"
         " (their images) or images."),
        ("why", "reproduce:why", "Which of spec NAME's requirements bring PACKAGE in, and"
         " which constrain its version."),
    )),
    ("Move to another machine", (
        ("save", "bundle:save", "Save labs NAMES (default: every built one) with the lab"
         " folder into one file."),
        ("load", "bundle:load_bundle", "Load a `labctl save` bundle: verify it, load its"
         " images, write the lab folder."),
        ("push", "images:push", "Push lab images (default: every current one) to a"
         " registry, for other machines."),
    )),
    ("Diagnose", (
        ("doctor", "diagnose:doctor", "Check whether this machine can run each lab, and if"
         " not, why and how to fix it."),
        ("errors", "diagnose:errors",
         "Explain an error by the id it printed (default: list every one)."),
        ("df", "disk:df", "Disk use of this lab folder: images (shared layers once), older"
         " images, containers, data folders, build cache, and what `labctl prune` would"
         " free."),
        ("prune", "disk:prune",
         "Free what labctl made for this lab and no longer needs (asks first)."),
    )),
)
_WHERE = {name: where for _, rows in SECTIONS for name, where, _ in rows}


class _Sections(click.Group):
    """The commands of SECTIONS, each imported when it is asked for; the help lists them
    by section from the table, each summary on one whole line (click cuts them at 45
    characters by default)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_WHERE)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = _WHERE.get(cmd_name)
        if where is None:
            return None
        module, attr = where.split(":")
        return getattr(importlib.import_module(f"labctl.cli.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, rows in SECTIONS:
            with formatter.section(title):
                formatter.write_dl([(name, summary) for name, _, summary in rows])


@click.group(cls=_Sections, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labctl")
def cli() -> None:
    """Build and run Docker learning labs (d2l, fastai, YOLO) as your own user."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Ctrl-C, and a closed terminal or `kill`, stop and remove a foreground lab the same
    # way, also when the shell started labctl with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    cli(prog_name="labctl")
