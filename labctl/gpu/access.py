"""How the engine gives a container the GPU: the NVIDIA runtime, CDI, or not at all.

One detection, used by `labctl run` and by doctor alike. CDI counts only when a CDI spec
for NVIDIA GPUs is there: Docker 28.2+ lists CDI spec folders (`CDISpecDirs`) by default
on every machine, GPU or not, so the folders alone mean nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from labctl.engine import Engine

GpuMode = Literal["runtime", "cdi", "none"]
DEFAULT_CDI_DIRS = ("/etc/cdi", "/var/run/cdi")


def nvidia_cdi_specs(dirs: list[str] | tuple[str, ...]) -> list[str]:
    """CDI spec files in ``dirs`` that describe NVIDIA GPUs (kind nvidia.com/gpu)."""
    found = []
    for d in dirs:
        folder = Path(d)
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.suffix not in (".yaml", ".yml", ".json"):
                continue
            try:
                if "nvidia.com/gpu" in f.read_text(encoding="utf-8", errors="replace"):
                    found.append(str(f))
            except OSError:
                continue
    return found


def mode(runtimes: list[str], cdi_specs: list[str]) -> GpuMode:
    """runtime (--gpus all through the nvidia runtime), cdi (NVIDIA CDI specs the engine
    reads), or none."""
    if runtimes:
        return "runtime"
    if cdi_specs:
        return "cdi"
    return "none"


def gpu_mode(engine: Engine) -> GpuMode:
    """The engine's GPU mode. CDI spec files are read on this machine: for a remote
    engine they cannot be seen, and only its nvidia runtime counts."""
    dirs = engine.cdi_spec_dirs()
    specs = nvidia_cdi_specs(dirs) if dirs and engine.is_local() else []
    return mode(engine.gpu_runtimes(), specs)
