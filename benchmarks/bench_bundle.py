"""`labctl save` / `labctl load` against the docker CLI pipeline, side by side in one run:
two labs that share their system and Python layers, built here, then

- bundle size against the sum of the unique layers (raw, and each compressed alone with
  the same zstd level) and against `docker save A B | zstd -T0`;
- save and load time against `docker save A B | zstd -T0 > f` and
  `zstd -dc f | docker load` (each load into an engine without the two labs' images, but
  with their base image, as a machine that has another lab of that base would be:
  labctl sends it only the layers it lacks, and says how many it did not send);
- the size of an update (`--since`) after a one-package change, against the full bundle.

Times are the median of --runs pairs (an even number: each side goes first as often),
the two sides taking turns to go first, after one `docker save` that warms the page cache
for both (the first reader of the layer files would otherwise pay for the disk). Each
timed run starts after a `sync`, untimed, so that no run pays for writing back what the
one before it wrote (a load leaves about twice the images' size to write). Every run's
figures are in --json.

    python benchmarks/bench_bundle.py [--base debian:bookworm] [--runs 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import zstandard
from rich.console import Console
from rich.table import Table

from labctl.bundle import format as fmt

PREFIX = "labctl-bench-bundle/"
SPECS = {
    "jup": 'base: {base}\npip: ["jupyterlab>=4.4,<5", "numpy>=1.26,<2"]\njupyter: true\n',
    "sci": 'base: {base}\npip: ["numpy>=1.26,<2", "pandas>=2.2,<3", "matplotlib>=3.8,<3.11"]\n',
}
console = Console(stderr=True)


def sh(cmd: str, **kw: object) -> float:
    t0 = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, **kw)  # type: ignore
    return time.monotonic() - t0


def labctl(lab: Path, *args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "labctl", *args, "--lab", str(lab)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def unique_layers(client: docker.DockerClient, tags: list[str]) -> tuple[int, int]:
    """(raw bytes, bytes compressed one by one) of the layers `docker save` holds."""
    raw = packed = 0
    cctx = zstandard.ZstdCompressor(level=3, threads=-1)
    from labctl.engine import Engine

    for info, data in fmt.walk(Engine(client).save_images(tags)):
        if info.isfile() and fmt.is_layer(info.name, set()):
            out = cctx.compressobj()
            for chunk in data:
                raw += len(chunk)
                packed += len(out.compress(chunk))
            packed += len(out.flush())
    return raw, packed


def pairs(runs: int, ours: Callable[[], float], theirs: Callable[[], float]
          ) -> tuple[list[float], list[float]]:
    """Each side ``runs`` times, taking turns to go first."""
    a: list[float] = []
    b: list[float] = []
    def timed(side: Callable[[], float], into: list[float]) -> None:
        os.sync()
        into.append(side())

    for i in range(runs):
        if i % 2:
            timed(theirs, b)
            timed(ours, a)
        else:
            timed(ours, a)
            timed(theirs, b)
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="debian:bookworm")
    ap.add_argument("--runs", type=int, default=4, help="timed pairs (default 4)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.runs < 2 or args.runs % 2:
        ap.error("--runs: an even number, so that each side goes first as often")
    zstd = shutil.which("zstd")
    if not zstd:
        sys.exit("the docker CLI pipeline needs zstd: sudo apt-get install zstd")
    client = docker.from_env(timeout=3600)
    tags = [f"{PREFIX}{n}:latest" for n in SPECS]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        lab = t / "lab"
        (lab / "images").mkdir(parents=True)
        (lab / "volumes.yaml").write_text("volumes: {}\n")
        (lab / "labctl.yaml").write_text(f"tag_prefix: {PREFIX}\n")
        for name, text in SPECS.items():
            (lab / "images" / f"{name}.yaml").write_text(text.format(base=args.base))
        console.print("[bold]building the two labs[/bold]")
        labctl(lab, "build", *SPECS)
        console.print("[bold]labctl save, and docker save | zstd[/bold]")
        bundle, cli_file = t / "labs.labctl.zst", t / "labs.tar.zst"
        sh(f"docker save {' '.join(tags)} > /dev/null")  # the page cache, for both sides

        def our_save() -> float:
            return labctl(lab, "save", *SPECS, "-o", str(bundle))

        def cli_save() -> float:
            cli_file.unlink(missing_ok=True)
            return sh(f"docker save {' '.join(tags)} | {zstd} -q -T0 -3 -o {cli_file}")
        saves = pairs(args.runs, our_save, cli_save)
        raw, packed = unique_layers(client, tags)
        console.print("[bold]an update after one more package[/bold]")
        spec = lab / "images" / "jup.yaml"
        spec.write_text(spec.read_text() + 'extras: ["tqdm==4.67.1"]\n')
        labctl(lab, "build", "jup")
        update = t / "update.labctl.zst"
        labctl(lab, "save", "jup", "-o", str(update), "--since", str(bundle))
        console.print("[bold]loads into an engine without these images[/bold]")

        def forget() -> None:
            for tag in tags:
                client.images.remove(tag, force=True)
            os.sync()  # the removal's writes too
        target = t / "there"
        loaded: list[dict] = []

        def our_load() -> float:
            forget()
            shutil.rmtree(target, ignore_errors=True)
            t0 = time.monotonic()
            out = subprocess.run([sys.executable, "-m", "labctl", "load", str(bundle),
                                  "--lab", str(target), "--json"], check=True,
                                 stdout=subprocess.PIPE).stdout
            took = time.monotonic() - t0
            loaded.append(json.loads(out))
            return took

        def cli_load() -> float:
            forget()
            return sh(f"{zstd} -q -dc {cli_file} | docker load", stdout=subprocess.DEVNULL)
        loads = pairs(args.runs, our_load, cli_load)
        forget()
        sizes = {"bundle": bundle.stat().st_size, "cli": cli_file.stat().st_size,
                 "update": update.stat().st_size}
    save_s, cli_save_s = (statistics.median(r) for r in saves)
    load_s, cli_load_s = (statistics.median(r) for r in loads)
    out = {"bundle_bytes": sizes["bundle"], "unique_layers_bytes": raw,
           "unique_layers_zstd_bytes": packed, "docker_save_zstd_bytes": sizes["cli"],
           "update_bytes": sizes["update"], "save_s": save_s, "cli_save_s": cli_save_s,
           "load_s": load_s, "cli_load_s": cli_load_s,
           "layers_sent": loaded[-1]["layers_sent"],
           "layers_already_here": loaded[-1]["layers_already_here"],
           "runs": {"save_s": saves[0], "cli_save_s": saves[1], "load_s": loads[0],
                    "cli_load_s": loads[1]}}
    if args.json:  # stdout holds the JSON alone; the table goes to stderr
        print(json.dumps(out, indent=2))
    table = Table(title="labctl save / load against the docker CLI (two labs, shared layers;"
                  f" times: median of {args.runs})")
    for col in ("measure", "labctl", "docker CLI / reference", "ratio"):
        table.add_column(col, justify="right" if col != "measure" else "left")

    def mb(v: int) -> str:
        return f"{v / 1e6:.1f} MB"
    table.add_row("bundle vs unique layers, each zstd -3", mb(out["bundle_bytes"]),
                  mb(packed), f"{out['bundle_bytes'] / packed:.3f}x")
    table.add_row("bundle vs unique layers, raw", mb(out["bundle_bytes"]), mb(raw),
                  f"{out['bundle_bytes'] / raw:.3f}x")
    table.add_row("bundle vs docker save | zstd -T0 -3", mb(out["bundle_bytes"]),
                  mb(out["docker_save_zstd_bytes"]),
                  f"{out['bundle_bytes'] / out['docker_save_zstd_bytes']:.3f}x")
    table.add_row("save", f"{save_s:.1f} s", f"{cli_save_s:.1f} s",
                  f"{save_s / cli_save_s:.2f}x")
    table.add_row("load", f"{load_s:.1f} s", f"{cli_load_s:.1f} s",
                  f"{load_s / cli_load_s:.2f}x")
    table.add_row("layers labctl sent / already on the engine", str(out["layers_sent"]),
                  str(out["layers_already_here"]), "")
    table.add_row("save + load", f"{save_s + load_s:.1f} s",
                  f"{cli_save_s + cli_load_s:.1f} s",
                  f"{(save_s + load_s) / (cli_save_s + cli_load_s):.2f}x")
    table.add_row("update (+1 package, --since) vs full bundle", mb(out["update_bytes"]),
                  mb(out["bundle_bytes"]), f"{out['update_bytes'] / out['bundle_bytes']:.4f}x")
    Console(stderr=args.json).print(table)


if __name__ == "__main__":
    main()
