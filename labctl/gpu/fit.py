"""Which torch wheel runs on which GPU: the compiled architectures of each wheel
(labctl/tables/torch_wheels.yaml), whether a GPU runs its kernels (cubin, or PTX through
the driver's JIT), and the wheel to suggest for a GPU and driver. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

from packaging.version import InvalidVersion, Version

from labctl.gpu import tables, torch_wheels
from labctl.gpu.arith import (
    CC,
    driver_supports,
    last_cuda_for,
    min_cuda_for,
    parse_cc,
    parse_cuda,
    variant_cuda,
)

Runs = Literal["cubin", "ptx", "no", "unknown"]


# --- wheels ----------------------------------------------------------------------------
@cache
def _arch_lists() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for row in tables.torch_wheels().archs:
        for minor in row.torch:
            out[(minor, row.variant)] = row.arch_list
    return out


@dataclass(frozen=True)
class ArchList:
    """The GPU code in a torch build: cubins (sm_XY) and PTX (compute_XY)."""

    cubins: tuple[CC, ...]
    ptx: tuple[CC, ...]

    def describe(self) -> str:
        parts = [f"sm_{a}{b}" for a, b in self.cubins] + [f"compute_{a}{b}" for a, b in self.ptx]
        return ", ".join(parts) or "no GPU code"


def parse_arch_list(text: str) -> ArchList:
    """TORCH_CUDA_ARCH_LIST syntax: '7.5;8.0;12.0+PTX'."""
    cubins: list[CC] = []
    ptx: list[CC] = []
    for item in re.split(r"[;\s]+", text.strip()):
        if not item:
            continue
        base, _, extra = item.partition("+")
        cc = parse_cc(base)
        cubins.append(cc)
        if extra.upper() == "PTX":
            ptx.append(cc)
    return ArchList(tuple(sorted(set(cubins))), tuple(sorted(set(ptx))))


def parse_torch_arch_list(items: list[str]) -> ArchList:
    """``torch.cuda.get_arch_list()`` output: ['sm_75', 'sm_120', 'compute_120']."""
    cubins = [parse_cc(i) for i in items if i.startswith("sm_")]
    ptx = [parse_cc(i) for i in items if i.startswith("compute_")]
    return ArchList(tuple(sorted(set(cubins))), tuple(sorted(set(ptx))))


def torch_minor(version: str) -> str:
    v = Version(version)
    return f"{v.major}.{v.minor}"


def wheel_archs(torch_version: str, variant: str) -> ArchList | None:
    """The compiled arch list of torch ``torch_version`` built for ``variant`` (None if
    the table has no row; a CPU wheel has an empty list)."""
    cu = torch_wheels.wheel_cuda(torch_version, variant)
    if cu == "cpu":
        return ArchList((), ())
    if cu is None:
        return None
    try:
        text = _arch_lists().get((torch_minor(torch_version), cu))
    except InvalidVersion:
        return None
    return parse_arch_list(text) if text else None


def kernels_run_on(archs: ArchList, cc: str | CC) -> Runs:
    """cubin: a cubin of the same major and an equal or lower minor; ptx: only PTX at or
    below the CC (JIT-compiled by the driver at first use); no: nothing runs."""
    major, minor = parse_cc(cc)
    if any(a == major and b <= minor for a, b in archs.cubins):
        return "cubin"
    if any(p <= (major, minor) for p in archs.ptx):
        return "ptx"
    return "no"


def wheel_runs_on(torch_version: str, variant: str, cc: str | CC) -> Runs:
    archs = wheel_archs(torch_version, variant)
    return "unknown" if archs is None else kernels_run_on(archs, cc)


@dataclass(frozen=True)
class Wheel:
    """A torch wheel that labctl can install: version, CUDA variant and its torchvision."""

    torch: str
    variant: str
    cuda: str
    torchvision: str
    pypi_default: bool

    def spec_line(self, with_vision: bool = True) -> str:
        """The spec change, written as YAML the learner can paste."""
        pkgs = f", packages: ['torchvision=={self.torchvision}']" if with_vision else ""
        return f"torch: {{version: '{self.torch}', variant: {self.variant}{pkgs}}}"


@cache
def _wheels() -> tuple[Wheel, ...]:
    out: list[Wheel] = []
    for rel in torch_wheels.releases():
        for variant in rel.variants:
            cuda = variant_cuda(variant)
            if cuda:
                out.append(Wheel(f"{rel.torch}.0", variant, cuda, f"{rel.torchvision}.0",
                                 variant == rel.pypi_default))
    out.sort(key=lambda w: (Version(w.torch), parse_cuda(w.cuda)), reverse=True)
    return tuple(out)


def wheels() -> list[Wheel]:
    """Every CUDA wheel in the table, newest torch first, highest CUDA first."""
    return list(_wheels())


def wheel_fits(w: Wheel, cc: str | CC) -> bool:
    """The wheel has code for the GPU and was built by a CUDA that targets it."""
    first, last = min_cuda_for(cc), last_cuda_for(cc)
    if first is None or parse_cuda(w.cuda) < parse_cuda(first):
        return False
    if last is not None and parse_cuda(w.cuda) > parse_cuda(last):
        return False
    return wheel_runs_on(w.torch, w.variant, cc) in ("cubin", "ptx")


def best_wheel(
    cc: str | CC, driver: str | None = None, cuda_max: str | None = None,
    *, allow_compat: bool = False,
) -> Wheel | None:
    """The wheel to suggest for a GPU (and, when given, its driver): the newest torch whose
    PyPI default wheel fits, else the newest one on PyTorch's own index. PyPI first because
    its mirrors are what learners behind slow networks can reach."""
    ok_support = ("full", "compat") if allow_compat else ("full",)
    fits = [
        w for w in wheels() if wheel_fits(w, cc)
        and (driver is None and cuda_max is None
             or driver_supports(driver, w.cuda, cuda_max) in ok_support)
    ]
    return next((w for w in fits if w.pypi_default), None) or (fits[0] if fits else None)
