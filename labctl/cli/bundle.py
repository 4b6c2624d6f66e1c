"""`labctl save` and `labctl load`: a lab, its images and (optionally) its data in one
file, for a machine whose registry and PyPI are slow or out of reach. The work is
labctl.bundle.transfer's; these commands show its progress and print its results."""

from __future__ import annotations

from pathlib import Path

import click

from labctl.bundle import format as fmt
from labctl.bundle import transfer
from labctl.cli import ui
from labctl.cli.common import built, engine, friendly, json_option, lab_option, load


@click.command()
@click.argument("names", nargs=-1)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The bundle file to write (e.g. d2l.labctl.zst).")
@click.option("--since", type=click.Path(exists=True, dir_okay=False),
              help="An earlier bundle (or its `labctl load --list --json`) the target has"
                   " loaded: its layers are left out.")
@click.option("--with-data", "data", multiple=True, metavar="ENTRY",
              help="Add a catalogue entry's files from the data folders (repeatable).")
@click.option("--wheelhouse", is_flag=True, help="Add the lab's wheelhouse.")
@json_option
@lab_option
@friendly
def save(names: tuple[str, ...], output: str, since: str | None, data: tuple[str, ...],
         wheelhouse: bool, as_json: bool, lab_dir: str | None) -> None:
    """Save labs NAMES (default: every built one) with the lab folder into one file."""
    lab = load(lab_dir)
    e = engine(lab)
    names = built(e, lab, names)
    if not names:
        raise click.UsageError("no lab of this folder is built; name one, or build it first")
    with ui.DownloadProgress() as bar:
        res = transfer.save(e, lab, list(names), Path(output),
                            since=Path(since) if since else None, data=list(data),
                            wheelhouse=wheelhouse, progress=bar.update)
    for w in res.warnings:
        ui.err_console.print(f"warning: {w}")
    if as_json:
        ui.dump_json(res.as_dict())
        return
    ui.table(f"{res.path} ({ui.human_size(res.size)} in {res.seconds:.0f} s; {res.layers}"
             f" layers{f', {res.omitted} left out (--since)' if res.omitted else ''})",
             ["lab", "tag", "torch", "image size"],
             [[i.name, i.tag, i.torch or "-", ui.human_size(i.size)] for i in res.images])
    ui.console.print(f"on the other machine: labctl load {res.path.name} --lab DIR")


@click.command(name="load")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--list", "list_only", is_flag=True,
              help="Verify the file and show what it holds; load nothing.")
@json_option
@click.option("--lab", "lab_dir", type=click.Path(file_okay=False),
              help="The lab folder to write (default: the current folder).")
@friendly
def load_bundle(bundle: str, list_only: bool, as_json: bool, lab_dir: str | None) -> None:
    """Load a `labctl save` bundle: verify it, load its images, write the lab folder."""
    path = Path(bundle)
    if list_only:
        with ui.DownloadProgress() as bar:
            m = transfer.read_manifest(path, bar.update)
        if as_json:
            ui.dump_json(m.model_dump())
        else:
            _print_manifest(path, m)
        return
    target = Path(lab_dir or ".").resolve()
    with ui.DownloadProgress() as bar:
        res = transfer.load(engine(), path, target, progress=bar.update)
    if as_json:
        ui.dump_json(res.as_dict())
    else:
        _print_loaded(res)


def _print_manifest(path: Path, m: fmt.Manifest) -> None:
    """`load --list`: the images, then what else the bundle holds."""
    ui.table(f"{path}: labctl {m.labctl}, saved {m.created}, verified",
             ["lab", "tag", "torch", "image size", "layers"],
             [[i.name, i.tag, i.torch or "-", ui.human_size(i.size), str(len(i.diff_ids))]
              for i in m.images])
    ui.console.print(f"{len(m.lab_files)} lab files, {len(m.data)} data files,"
                     f" {len(m.hf)} Hugging Face repositories,"
                     f" {len(m.wheels)} wheels, {len(m.layers)} layers"
                     + (f", {len(m.omitted)} left out (needs the earlier bundle)"
                        if m.omitted else ""))


def _print_loaded(res: transfer.LoadResult) -> None:
    ui.table(f"loaded into {res.lab} in {res.seconds:.0f} s", ["lab", "tag"],
             [list(i) for i in res.images])
    if res.layers_here:
        ui.console.print(f"{res.layers_here} of {res.layers_here + res.layers_sent} layers"
                         " were on this engine already: not sent again")
    ui.console.print(f"{len(res.written)} files written, {len(res.unchanged)} already there"
                     + (f"; data: {', '.join(res.data)}" if res.data else "")
                     + f"\nnext: cd {res.lab} && labctl list")
