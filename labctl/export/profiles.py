"""One lab as every multi-learner door sees it: the Kubernetes manifests, the
zero-to-jupyterhub profile list and `labctl hub`'s DockerSpawner profiles all read its
limits, volumes and GPU from here, so the three never disagree. Pure: no engine.

Shared volumes (data, cache) hold what a class reads together (datasets, weights); every
other volume and the work folder are each learner's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from labctl.config.lab import Lab
from labctl.config.spec import ImageSpec
from labctl.gpu.compat import gpu_use
from labctl.image.layers import command
from labctl.runtime.plan import SHM_SIZE

SHARED = ("data", "cache")  # read by every learner of a class
GPU_RESOURCE = "nvidia.com/gpu"
CPU_LIMIT = "2"  # per learner: a class shares one machine's cores
MEMORY_LIMIT = "8Gi"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class LabProfile:
    """What a hub or a cluster needs to know of one lab (from its spec and the lab folder)."""

    name: str
    image: str
    description: str
    env: dict[str, str]
    volumes: dict[str, str]  # volume name -> container path
    workdir: str
    jupyter_port: int | None
    command: list[str]
    gpu: bool
    cpu: str = CPU_LIMIT
    memory: str = MEMORY_LIMIT  # Kubernetes' notation: binary units (Gi)
    shm: str = SHM_SIZE  # /dev/shm: PyTorch DataLoader workers pass batches through it
    storage: dict[str, str] = field(default_factory=lambda: {"data": "50Gi", "cache": "50Gi",
                                                              "models": "20Gi",
                                                              "work": "10Gi"})

    @property
    def slug(self) -> str:
        return dns_name(self.name)

    @property
    def shared(self) -> dict[str, str]:
        """The class's volumes (name -> container path): read-only for learners on a hub."""
        return {k: v for k, v in self.volumes.items() if k in SHARED}

    @property
    def own(self) -> dict[str, str]:
        """Each learner's own volumes, the work folder included (name -> container path)."""
        return {**{k: v for k, v in self.volumes.items() if k not in SHARED},
                "work": self.workdir}

    @property
    def memory_bytes(self) -> int:
        return size_bytes(self.memory)

    @property
    def shm_bytes(self) -> int:
        return size_bytes(self.shm)


def size_bytes(text: str) -> int:
    """'8Gi', '8G', '2g', '512Mi' -> bytes (binary units, as Docker reads them)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*", text.upper())
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. 8Gi, 512Mi)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def lab_profile(lab: Lab, spec: ImageSpec, image: str, *, cpu: str = CPU_LIMIT,
                memory: str = MEMORY_LIMIT) -> LabProfile:
    """The lab as `labctl run` would start it: the spec's volumes at the same paths with
    the same variables, its command and Jupyter port, a GPU when the spec uses one."""
    env: dict[str, str] = {}
    volumes = {}
    for name in spec.volumes:
        env.update(lab.volumes[name].env)
        volumes[name] = lab.volumes[name].container
    jupyter = spec.jupyter.port if spec.jupyter and spec.jupyter.enabled else None
    return LabProfile(spec.name, image, spec.description or spec.name, env, volumes,
                      spec.workdir, jupyter, command(spec), gpu_use(spec) != "no",
                      cpu=cpu, memory=memory)


def dns_name(text: str) -> str:
    """A Kubernetes object name (RFC 1123 label) from a spec name."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return out or "lab"
