"""Build the same d2l-sized package set every way on one engine, in one run, and print the
figures side by side: labctl with BuildKit, labctl with the classic builder, a naive
single-RUN pip Dockerfile, and the host floor (uv into a fresh venv on the host, no
cache, the same packages).

    python benchmarks/bench_build.py [--base debian:bookworm] [--cpu-wheelhouse DIR]
                                     [--backends buildkit,classic] [--json]

--cpu-wheelhouse DIR takes torch==2.13.0+cpu from DIR (no torchvision: no CPU build of it
is reachable here) instead of PyPI's CUDA 12.8 wheels, whose 7 GB dominate every image.
labctl gives DIR to its build as the lab's wheelhouse; the naive Dockerfile COPYs it in.

Measures, per labctl backend: a cold build (no layer cache, BuildKit's cache mounts
emptied), a rebuild after adding one package, a no-op rebuild, the image size and its
payload (base image + what apt and uv installed), a second lab built cold (the system
and torch layers present, other packages), a lock bump of one package with the caches
warm (uv's lines show what it downloaded), and the steps that took the time. Every figure
is printed; --json prints them for scripts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker
from rich.console import Console
from rich.table import Table

from labctl.config.lab import load_lab
from labctl.engine import Engine
from labctl.image.build import BuildEvent, BuildOptions, build
from labctl.image.buildkit import find_cli
from labctl.image.render import render

HERE = Path(__file__).resolve().parent
TORCH = ["torch==2.10.0", "torchvision==0.25.0"]
CPU_TORCH = ["torch==2.13.0+cpu"]
PIP = ["jupyterlab>=4.4,<5", "numpy>=1.26,<2", "pandas>=2.2,<3", "matplotlib>=3.8,<3.11",
       "matplotlib-inline", "requests", "pillow", "ipython"]
SECOND = ["scikit-learn>=1.5,<2", "seaborn>=0.13,<0.14", "sympy>=1.13,<2"]
NODEPS = ["d2l==0.17.6"]
ADDED = "tqdm==4.67.1"
BUMP = ("tqdm", "4.67.0")  # the lock bump: tqdm moves back one release
SPEC = """\
base: {base}
{torch}
pip: {pip}
pip_nodeps: {nodeps}
extras: {extras}
"""
console = Console(stderr=True)


def say(msg: str) -> None:
    console.print(f"[bold]{msg}[/bold]")


class Side:
    """labctl with one backend, in a lab folder of its own."""

    def __init__(self, backend: str, base: str, root: Path, wheels: Path | None) -> None:
        self.backend, self.base, self.root = backend, base, root
        (root / "images").mkdir(parents=True)
        (root / "volumes.yaml").write_text("volumes: {}\n")
        settings = f"tag_prefix: labctl-bench-{backend}/\nbuilder: {backend}\n"
        self.torch = ('torch: {version: "2.10.0", variant: cu128, packages:'
                      ' ["torchvision==0.25.0"]}')
        if wheels:
            settings += f"wheelhouse: {wheels}\n"
            self.torch = 'torch: {version: "2.13.0+cpu", index_url: "https://pypi.org/simple"}'
        (root / "labctl.yaml").write_text(settings)
        self.engine = Engine.connect(timeout=3600)

    def build(self, name: str, pip: list[str], extras: list[str], nocache: bool = False,
              lines: list[str] | None = None) -> tuple[float, object]:
        (self.root / "images" / f"{name}.yaml").write_text(SPEC.format(
            base=self.base, torch=self.torch, pip=pip, nodeps=NODEPS, extras=extras))
        lab = load_lab(str(self.root))

        def keep(ev: BuildEvent) -> None:
            if lines is not None and ev.kind == "output":
                lines.append(ev.text)

        t0 = time.monotonic()
        res = build(self.engine, lab, render(lab, lab.spec(name)), lab.image_tag(name),
                    BuildOptions(nocache=nocache), on_event=keep)
        return time.monotonic() - t0, res

    def lock(self, name: str) -> None:
        subprocess.run([sys.executable, "-m", "labctl", "lock", name, "--lab", str(self.root)],
                       check=True, capture_output=True)

    def bump(self, name: str) -> list[str]:
        """Move one pinned package in the lock to another version; rebuild; uv's lines."""
        path = self.root / "images" / f"{name}.lock"
        text = path.read_text()
        pkg, version = BUMP
        start = text.index(f"{pkg}==")
        end = text.index("\n", text.index("--hash", start))
        while text[end + 1:].startswith("    --hash"):
            end = text.index("\n", end + 1)
        path.write_text(text[:start] + f"{pkg}=={version}" + text[end:])
        lines: list[str] = []
        self.build(name, PIP, [f"{pkg}>=4.66"], lines=lines)
        return [ln.strip() for ln in lines if ln.strip().startswith(
            ("Resolved", "Prepared", "Downloaded", "Installed", "Uninstalled", "+ ", "- "))]


def payload(client: docker.DockerClient, tag: str, base: str) -> int:
    """What the image holds beyond nothing: the base image, and what apt and uv put in."""
    out = client.containers.run(tag, ["bash", "-c",
                                      "du -sb /opt/venv /usr/local/bin/uv | awk '{s+=$1} END"
                                      " {print s}'; dpkg-query -W -f '${Installed-Size}\\n' |"
                                      " awk '{s+=$1} END {print s*1024}'"],
                                entrypoint=[], remove=True).decode().split()
    base_out = client.containers.run(base, ["bash", "-c", "dpkg-query -W -f"
                                            " '${Installed-Size}\\n' | awk '{s+=$1} END"
                                            " {print s*1024}'"], remove=True).decode().split()
    venv, dpkg, base_dpkg = int(out[0]), int(out[1]), int(base_out[0])
    return client.images.get(base).attrs["Size"] + venv + max(dpkg - base_dpkg, 0)


def labctl_side(backend: str, base: str, root: Path, wheels: Path | None,
                client: docker.DockerClient) -> dict[str, object]:
    side = Side(backend, base, root, wheels)
    if backend == "buildkit":  # cold: no BuildKit cache, cache mounts included
        cli = find_cli()
        assert cli is not None
        # the CLI that builds (a newer docker on PATH may hand `builder` to a missing buildx)
        subprocess.run([cli.argv[0], "builder", "prune", "-af"], check=True,
                       capture_output=True, env={**os.environ, **dict(cli.env)})
    say(f"labctl ({backend}): cold build")
    cold, res_cold = side.build("bench", PIP, [], nocache=True)
    say(f"labctl ({backend}): +1 package, no-op")
    added, _ = side.build("bench", PIP, [ADDED])
    noop, res = side.build("bench", PIP, [ADDED])
    assert res.status == "current"
    say(f"labctl ({backend}): a second lab, cold (system and torch layers present)")
    second, _ = side.build("second", SECOND, [])
    say(f"labctl ({backend}): a lock bump of one package")
    side.lock("bench")
    side.build("bench", PIP, [f"{BUMP[0]}>=4.66"])
    bump_lines = side.bump("bench")
    steps = sorted(res_cold.timings, key=lambda t: -t[3])[:8]
    return {"backend": backend, "cold_s": cold, "plus1_s": added, "noop_s": noop,
            "size_bytes": res.size, "second_lab_s": second,
            "payload_bytes": payload(client, res.tag, base),
            "slowest_steps": [{"step": s, "key": k, "instruction": i[:70], "seconds": sec}
                              for s, k, i, sec in steps],
            "lock_bump_uv": bump_lines}


def naive_side(base: str, client: docker.DockerClient, wheels: Path | None
               ) -> dict[str, float]:
    ca = Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
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

    say("naive single-RUN Dockerfile: cold, +1 package")
    cold, _ = once(PIP, nocache=True)
    added, image_id = once(PIP + [ADDED])
    return {"naive_cold_s": cold, "naive_plus1_s": added,
            "naive_size_bytes": client.images.get(image_id).attrs["Size"]}


def host_floor(packages: list[str], wheels: Path | None) -> float:
    """uv into a fresh venv on this host, no cache: the install itself, nothing else."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([uv, "venv", "-q", str(venv)], check=True)
        cmd = [uv, "pip", "install", "-q", "--no-cache", "--python", str(venv / "bin/python"),
               *packages]
        if wheels:
            cmd[3:3] = ["--find-links", str(wheels)]
        t0 = time.monotonic()
        subprocess.run(cmd, check=True)
        took = time.monotonic() - t0
        subprocess.run([uv, "pip", "install", "-q", "--no-cache", "--no-deps", "--python",
                        str(venv / "bin/python"), *NODEPS], check=True)
    return took


def forget(client: docker.DockerClient) -> None:
    """Remove the images this benchmark tags (labctl-bench*/...)."""
    for img in client.images.list():
        for tag in img.tags:
            if tag.startswith("labctl-bench"):
                client.images.remove(tag, force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="debian:bookworm")
    ap.add_argument("--cpu-wheelhouse", type=Path, help="a folder holding torch 2.13.0+cpu")
    ap.add_argument("--backends", default="buildkit,classic")
    ap.add_argument("--json", action="store_true", help="print every figure as JSON")
    args = ap.parse_args()
    wheels = args.cpu_wheelhouse.resolve() if args.cpu_wheelhouse else None
    backends = [b for b in args.backends.split(",") if b != "buildkit" or find_cli()]
    client = docker.from_env(timeout=3600)
    torch = CPU_TORCH if wheels else TORCH
    say("host floor: uv into a fresh venv, no cache")
    floor = host_floor([*torch, *PIP], wheels)
    second_floor = host_floor([*torch, *SECOND], wheels)
    results = []
    forget(client)  # an image left by an earlier run would make a build here a no-op
    try:
        for backend in backends:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(labctl_side(backend, args.base, Path(tmp) / "lab", wheels,
                                           client))
        naive = naive_side(args.base, client, wheels)
    finally:
        forget(client)
    for r in results:
        r.update(naive, floor_s=floor, second_lab_floor_s=second_floor)
    if args.json:  # stdout holds the JSON alone; the tables go to stderr
        print(json.dumps(results, indent=2))
    show = Console(stderr=args.json)
    what = "torch 2.13 CPU" if wheels else "torch 2.10 CUDA 12.8 + torchvision"
    table = Table(title=f"{what} + jupyterlab + d2l on {args.base}")
    table.add_column("measure")
    for r in results:
        table.add_column(f"labctl {r['backend']}", justify="right")
    for col in ("naive", "host floor", "ratios"):
        table.add_column(col, justify="right")

    def s(v: float) -> str:
        return f"{v:.1f} s"

    def ratios(key: str, other: float, name: str) -> str:
        return "  ".join(f"{r['backend'][:5]} {r[key] / other:.3f}x {name}" for r in results)

    gb = lambda v: f"{v / 1e9:.2f} GB"  # noqa: E731
    table.add_row("cold build", *[s(r["cold_s"]) for r in results], s(naive["naive_cold_s"]),
                  s(floor), ratios("cold_s", naive["naive_cold_s"], "naive") + "  " +
                  ratios("cold_s", floor, "floor"))
    table.add_row("rebuild +1 package", *[s(r["plus1_s"]) for r in results],
                  s(naive["naive_plus1_s"]), "", ratios("plus1_s", naive["naive_plus1_s"],
                                                        "naive"))
    table.add_row("no-op rebuild", *[s(r["noop_s"]) for r in results], "", "", "")
    table.add_row("second lab, cold", *[s(r["second_lab_s"]) for r in results], "",
                  s(second_floor), ratios("second_lab_s", second_floor, "its floor"))
    table.add_row("image size", *[gb(r["size_bytes"]) for r in results],
                  gb(naive["naive_size_bytes"]), "",
                  ratios("size_bytes", naive["naive_size_bytes"], "naive"))
    table.add_row("payload (base+apt+venv)", *[gb(r["payload_bytes"]) for r in results], "",
                  "", "  ".join(f"{r['backend'][:5]} size/payload "
                                f"{r['size_bytes'] / r['payload_bytes']:.3f}" for r in results))
    show.print(table)
    for r in results:
        steps = Table(title=f"labctl {r['backend']}: the slowest steps of the cold build")
        for col in ("step", "key", "instruction", "seconds"):
            steps.add_column(col)
        for t in r["slowest_steps"]:
            steps.add_row(str(t["step"]), t["key"], t["instruction"], f"{t['seconds']:.1f}")
        show.print(steps)
        show.print(f"labctl {r['backend']}: the lock bump of {BUMP[0]}, uv said:\n  "
                        + "\n  ".join(r["lock_bump_uv"]))


if __name__ == "__main__":
    main()
