"""The `labctl doctor` click command (placeholder until the doctor lands)."""

from __future__ import annotations

import click


@click.command()
@click.argument("names", nargs=-1)
def doctor(names: tuple[str, ...]) -> None:
    """Check whether this machine can run each lab, and if not, why."""
    raise click.ClickException("doctor is not implemented yet")
