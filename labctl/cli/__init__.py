"""The click command line: a thin layer over config, image, runtime, lock and doctor.

Every command is registered here, under the section of what a learner does with it, so
`from labctl.cli import cli` is the whole command line and `labctl --help` reads as the
order of a learner's day: set up, build, run, reproduce, move, diagnose.
"""

from __future__ import annotations

import signal

import click

from labctl import __version__
from labctl.cli import (  # _startup first (see it)
    _startup,  # noqa: F401
    bundle,
    data,
    diagnose,
    disk,
    export,
    hub,
    images,
    reproduce,
    running,
    setup,
)

SECTIONS: tuple[tuple[str, tuple[click.Command, ...]], ...] = (
    ("Set up", (setup.init, setup.base, data.data)),
    ("Build", (images.list_, images.render, images.build, images.add)),
    ("Run", (running.run, running.shell, running.ps, running.logs, running.stop,
             running.check, export.devcontainer, export.compose, export.export_group,
             hub.hub_group)),
    ("Reproduce", (reproduce.lock, reproduce.freeze, reproduce.diff, reproduce.why)),
    ("Move to another machine", (bundle.save, bundle.load_bundle, images.push)),
    ("Diagnose", (diagnose.doctor, diagnose.errors, disk.df, disk.prune)),
)


class _Sections(click.Group):
    """A group whose help lists its commands by section, each summary on one whole line
    (click cuts them at 45 characters by default)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c.name for _, cmds in SECTIONS for c in cmds if c.name]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, cmds in SECTIONS:
            rows = [(c.name or "", c.get_short_help_str(limit=200)) for c in cmds]
            with formatter.section(title):
                formatter.write_dl(rows)


@click.group(cls=_Sections, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labctl")
def cli() -> None:
    """Build and run Docker learning labs (d2l, fastai, YOLO) as your own user."""


for _title, _commands in SECTIONS:
    for _command in _commands:
        cli.add_command(_command)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Ctrl-C, and a closed terminal or `kill`, stop and remove a foreground lab the same
    # way, also when the shell started labctl with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    cli(prog_name="labctl")
