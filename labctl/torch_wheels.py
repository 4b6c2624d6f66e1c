"""Where a torch wheel of a given version and CUDA variant comes from (pure, data-driven)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import yaml
from packaging.version import Version

from labctl.errors import LabError
from labctl.resources import data_dir


@dataclass(frozen=True)
class TorchRelease:
    torch: str
    torchvision: str
    pypi_default: str
    variants: tuple[str, ...]


@cache
def _table() -> tuple[str, tuple[TorchRelease, ...]]:
    raw = yaml.safe_load((data_dir() / "torch_wheels.yaml").read_text(encoding="utf-8"))
    rels = tuple(
        TorchRelease(r["torch"], r["torchvision"], r["pypi_default"], tuple(r["variants"]))
        for r in raw["releases"]
    )
    return raw["index_template"], rels


def releases() -> tuple[TorchRelease, ...]:
    """Every row of the table, as read once from torch_wheels.yaml."""
    return _table()[1]


def release(version: str) -> TorchRelease | None:
    """The table row for a torch version (matched on major.minor)."""
    v = Version(version)
    key = f"{v.major}.{v.minor}"
    return next((r for r in _table()[1] if r.torch == key), None)


def wheel_cuda(version: str, variant: str) -> str | None:
    """The CUDA variant a wheel actually bundles ('cu128'), 'cpu', or None if unknown."""
    if variant != "default":
        return variant
    rel = release(version)
    return rel.pypi_default if rel else None


def index_url(version: str, variant: str) -> str | None:
    """The index to install torch from; None means the lab's normal index (PyPI)."""
    rel = release(version)
    if variant == "default" or (rel and variant == rel.pypi_default):
        return None
    if rel and variant not in rel.variants:
        raise LabError(
            f"torch {version} is not built for variant '{variant}'",
            fix=f"use one of {', '.join(rel.variants)} (or 'default' = {rel.pypi_default})",
        )
    return _table()[0].format(variant=variant)
