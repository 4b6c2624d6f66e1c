"""Where a torch wheel of a given version and CUDA variant comes from (pure, data-driven)."""

from __future__ import annotations

from packaging.version import Version

from labctl.errors import LabError
from labctl.gpu.tables import CudaCost, TorchRelease, torch_wheels


def releases() -> tuple[TorchRelease, ...]:
    """Every row of the table, as read once from torch_wheels.yaml."""
    return tuple(torch_wheels().releases)


def release(version: str) -> TorchRelease | None:
    """The table row for a torch version (matched on major.minor)."""
    v = Version(version)
    key = f"{v.major}.{v.minor}"
    return next((r for r in torch_wheels().releases if r.torch == key), None)


def wheel_cuda(version: str, variant: str) -> str | None:
    """The CUDA variant a wheel actually bundles ('cu128'), 'cpu', or None if unknown."""
    if variant != "default":
        return variant
    rel = release(version)
    return rel.pypi_default if rel else None


def cuda_cost(version: str, variant: str) -> CudaCost | None:
    """The measured disk cost of a CUDA wheel's libraries: the row of this torch minor and
    variant, else the nearest measured one (the libraries change little between minors)."""
    cu = wheel_cuda(version, variant)
    if not cu or not cu.startswith("cu"):
        return None
    rows = torch_wheels().cuda_cost
    if not rows:
        return None
    v = Version(version)
    exact = [r for r in rows if r.torch == f"{v.major}.{v.minor}" and r.variant == cu]
    return exact[0] if exact else min(rows, key=lambda r: _distance(r.torch, v))


def _distance(minor: str, v: Version) -> int:
    m = Version(minor)
    return abs((m.major * 100 + m.minor) - (v.major * 100 + v.minor))


def index_url(version: str, variant: str, mirror: str | None = None) -> str | None:
    """The index to install torch from; None means the lab's normal index (PyPI).
    ``mirror`` stands for https://download.pytorch.org/whl (labctl.yaml's
    network.torch_index): the variant's folder is added to it."""
    rel = release(version)
    if variant == "default" or (rel and variant == rel.pypi_default):
        return None
    if rel and variant not in rel.variants:
        raise LabError(
            f"torch {version} is not built for variant '{variant}'", id="gpu.unknown-torch-variant",
            fix=f"use one of {', '.join(rel.variants)} (or 'default' = {rel.pypi_default})",
        )
    if mirror:
        return f"{mirror.rstrip('/')}/{variant}"
    return torch_wheels().index_template.format(variant=variant)
