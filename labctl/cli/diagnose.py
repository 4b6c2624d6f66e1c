"""Diagnose: `labctl doctor` runs doctor's checks, shows them grouped by area (or as
JSON), and exits 1 when any check fails; `labctl errors` explains an error by its id."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from labctl.cli import ui
from labctl.cli.common import friendly, json_option, lab_option
from labctl.doctor.context import Context
from labctl.doctor.registry import AREAS, Result, exit_code
from labctl.doctor.report import diagnose
from labctl.errors import LabError, error_table

STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def render(results: list[Result]) -> None:
    """One table per area; the fix under its message."""
    console = Console(highlight=False)

    for area in AREAS:
        rows = [r for r in results if r.area == area]
        if not rows:
            continue
        t = Table(title=area, title_justify="left", title_style="bold", show_header=False)
        t.add_column("status", no_wrap=True)
        t.add_column("check", style="bold", no_wrap=True)
        t.add_column("result", overflow="fold")
        for r in rows:
            cell = Text(r.message)
            if r.fix:
                cell.append("\nfix: ", style="bold green")
                cell.append(r.fix)
            t.add_row(Text(r.status, style=STYLES[r.status]), Text(r.title), cell)
        console.print(t)
    counts = {s: sum(r.status == s for r in results) for s in STYLES}
    summary = Text(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if counts["fail"]:
        summary.append("  - fix the failures above", style="bold red")
    console.print(summary)


@click.command()
@click.argument("names", nargs=-1)
@json_option
@click.option("--image", "in_image", is_flag=True,
              help="Also check inside each built image (one short container per image).")
@click.option("--model", "models", multiple=True, metavar="ORG/NAME",
              help="Does this Hugging Face model fit each GPU (fp16/bf16, int8, int4)?"
                   " Reads its config and safetensors index, not its weights.")
@lab_option
@friendly
def doctor(names: tuple[str, ...], as_json: bool, in_image: bool, models: tuple[str, ...],
           lab_dir: str | None) -> None:
    """Check whether this machine can run each lab, and if not, why and how to fix it.

    Checks the engine, the GPUs and driver, GPU access for containers, the lab's folders
    and ports, and each spec's PyTorch/CUDA against each GPU (NAMES: only those specs).
    Exits 1 when a check fails.
    """
    ctx = Context(names, image=in_image, lab_dir=lab_dir)
    results = diagnose(ctx, models)
    if as_json:
        sys.stdout.write(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    else:
        render(results)
    sys.exit(exit_code(results))


@click.command(name="errors")
@click.argument("ids", nargs=-1)
@json_option
@friendly
def errors(ids: tuple[str, ...], as_json: bool) -> None:
    """Explain an error by the id it printed (default: list every one)."""
    table = error_table()
    unknown = [i for i in ids if i not in table]
    if unknown:
        close = sorted(i for i in table if any(u.split(".")[0] == i.split(".")[0]
                                               for u in unknown))[:8]
        raise LabError(f"no error has the id {', '.join(unknown)}", id="cli.no-such-error",
                       fix="`labctl errors` lists them all" + (
                           f"; of that area: {', '.join(close)}" if close else ""))
    rows = [(i, *table[i]) for i in (ids or sorted(table))]
    if as_json:
        ui.dump_json([{"id": i, "what": what, "fix": fix} for i, what, fix in rows])
        return
    ui.table(None, ["id", "what", "fix"], rows)
