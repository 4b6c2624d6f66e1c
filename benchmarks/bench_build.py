"""Build the same d2l-sized package set two ways on the same engine and print the figures
side by side: labctl's layered uv Dockerfile against a naive single-RUN pip Dockerfile.

    python benchmarks/bench_build.py [--base debian:bookworm] [--cpu-wheelhouse DIR]

--cpu-wheelhouse DIR builds both with PyTorch's CPU wheel torch==2.13.0+cpu taken from DIR
(no torchvision: no CPU build of it is reachable here) instead of PyPI's CUDA 12.8 wheels,
whose 7 GB dominate both images. labctl serves DIR to its build as the lab's wheelhouse;
the naive Dockerfile COPYs it in, as hand-written ones do.

Measures: cold build (no cache), rebuild after adding one package, no-op rebuild, image
size, and the ratios labctl / naive. Both builds run in one invocation, one after the
other, so they see the same machine and network.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import tempfile
import time
from pathlib import Path

import docker
from labctl.build import build
from labctl.lab import load_lab
from labctl.render import render
from rich.console import Console
from rich.table import Table

from labctl.engine import Engine

HERE = Path(__file__).resolve().parent
TORCH = ["torch==2.10.0", "torchvision==0.25.0"]
CPU_TORCH = ["torch==2.13.0+cpu"]
PIP = ["jupyterlab>=4.4,<5", "numpy>=1.26,<2", "pandas>=2.2,<3", "matplotlib>=3.8,<3.11",
       "matplotlib-inline", "requests", "pillow", "ipython"]
NODEPS = ["d2l==0.17.6"]
ADDED = "tqdm==4.67.1"
SPEC = """\
base: {base}
{torch}
pip: {pip}
pip_nodeps: {nodeps}
extras: {extras}
"""


def labctl_side(base: str, root: Path, wheels: Path | None) -> dict[str, float]:
    (root / "images").mkdir(parents=True)
    (root / "volumes.yaml").write_text("volumes: {}\n")
    settings = "tag_prefix: labctl-bench/\n"
    torch = 'torch: {version: "2.10.0", variant: cu128, packages: ["torchvision==0.25.0"]}'
    if wheels:
        settings += f"wheelhouse: {wheels}\n"
        torch = 'torch: {version: "2.13.0+cpu", index_url: "https://pypi.org/simple"}'
    (root / "labctl.yaml").write_text(settings)
    spec = root / "images" / "bench.yaml"
    engine = Engine.connect(timeout=3600)

    def once(extras: list[str], nocache: bool = False) -> tuple[float, object]:
        spec.write_text(SPEC.format(base=base, torch=torch, pip=PIP, nodeps=NODEPS,
                                    extras=extras))
        lab = load_lab(str(root))
        t0 = time.monotonic()
        res = build(engine, lab, render(lab, lab.spec("bench")), lab.image_tag("bench"),
                    nocache=nocache)
        return time.monotonic() - t0, res

    cold, _ = once([], nocache=True)
    added, _ = once([ADDED])
    noop, res = once([ADDED])
    assert res.status == "current"
    return {"cold": cold, "added": added, "noop": noop, "size": res.size}


def naive_side(base: str, client: docker.DockerClient, wheels: Path | None
               ) -> dict[str, float]:
    ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")).read_bytes()
    torch = CPU_TORCH if wheels else TORCH
    files = [("ca.crt", ca)]
    files += [(f"wheels/{w.name}", w.read_bytes()) for w in sorted(wheels.glob("*.whl"))] \
        if wheels else [("wheels/.keep", b"")]

    def once(pkgs: list[str], nocache: bool = False) -> tuple[float, str]:
        text = (HERE / "naive.Dockerfile").read_text().format(
            base=base, packages=" ".join(f"'{p}'" for p in torch + pkgs),
            nodeps=" ".join(NODEPS))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in [("Dockerfile", text.encode()), *files]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        t0 = time.monotonic()
        image, _ = client.images.build(fileobj=buf, custom_context=True, nocache=nocache,
                                       tag="labctl-bench/naive:latest", rm=True)
        return time.monotonic() - t0, image.id

    cold, _ = once(PIP, nocache=True)
    added, _ = once(PIP + [ADDED])
    noop, image_id = once(PIP + [ADDED])
    return {"cold": cold, "added": added, "noop": noop,
            "size": client.images.get(image_id).attrs["Size"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="debian:bookworm")
    ap.add_argument("--cpu-wheelhouse", type=Path, help="a folder holding torch 2.13.0+cpu")
    args = ap.parse_args()
    wheels = args.cpu_wheelhouse.resolve() if args.cpu_wheelhouse else None
    client = docker.from_env(timeout=3600)
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        console.print("building with labctl (cold, +1 package, no-op) ...")
        ours = labctl_side(args.base, Path(tmp) / "lab", wheels)
    console.print("building the naive single-RUN Dockerfile (cold, +1 package, no-op) ...")
    naive = naive_side(args.base, client, wheels)
    what = "torch 2.13 CPU" if wheels else "torch 2.10 CUDA 12.8 + torchvision"
    table = Table(title=f"{what} + jupyterlab + d2l on {args.base}")
    for col in ("measure", "labctl", "naive", "labctl / naive"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    for key, label, unit in (("cold", "cold build", "s"), ("added", "rebuild +1 package", "s"),
                             ("noop", "no-op rebuild", "s"), ("size", "image size", "GB")):
        a, b = ours[key], naive[key]
        fmt = (lambda v: f"{v / 1e9:.2f} GB") if unit == "GB" else (lambda v: f"{v:.1f} s")
        ratio = a / b
        # Three decimals below 0.1: the +1 reference (2.4 s / 108 s) is 0.022.
        table.add_row(label, fmt(a), fmt(b), f"{ratio:.3f}" if ratio < 0.1 else f"{ratio:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
