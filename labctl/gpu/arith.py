"""GPU arithmetic: compute capabilities, CUDA versions and driver versions, parsed and
compared, and what the tables (labctl/tables/gpu_arch.yaml, cuda_drivers.yaml) say of
each. Pure: the rules of labctl/gpu/fit.py and the verdicts of compat.py build on it."""

from __future__ import annotations

import re
from functools import cache
from typing import Literal

from labctl.gpu import tables
from labctl.gpu.tables import Arch

CC = tuple[int, int]
DriverSupport = Literal["full", "compat", "no", "unknown"]


# --- parsing -------------------------------------------------------------------------
def parse_cc(value: str | CC) -> CC:
    """'12.0' -> (12, 0); also accepts 'sm_120' / 'compute_120' and a tuple."""
    if isinstance(value, tuple):
        return value
    text = str(value).strip()
    m = re.fullmatch(r"(?:sm_|compute_)(\d+?)(\d)[a-z]?", text)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a compute capability: {value!r}")
    return int(m.group(1)), int(m.group(2))


def cc_str(cc: str | CC) -> str:
    major, minor = parse_cc(cc)
    return f"{major}.{minor}"


def parse_cuda(value: str) -> tuple[int, int]:
    """'12.8' (or '12.8.1') -> (12, 8)."""
    parts = str(value).strip().split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


def parse_driver(value: str) -> tuple[int, ...]:
    """'570.133.07' -> (570, 133, 7): compared as numbers, not text."""
    return tuple(int(p) for p in re.findall(r"\d+", str(value)))


def variant_cuda(variant: str | None) -> str | None:
    """'cu128' -> '12.8' (the last digit is the minor); 'cpu' or unknown -> None."""
    m = re.fullmatch(r"cu(\d+)(\d)", variant or "")
    return f"{int(m.group(1))}.{m.group(2)}" if m else None


def cuda_variant(cuda: str) -> str:
    """'12.8' -> 'cu128'."""
    major, minor = parse_cuda(cuda)
    return f"cu{major}{minor}"


# --- tables ----------------------------------------------------------------------------
@cache
def arch_table() -> dict[CC, Arch]:
    return {parse_cc(a.cc): a for a in tables.gpu_arch().architectures}


@cache
def _names() -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(r.match), r.cc) for r in tables.gpu_arch().names)


@cache
def _drivers() -> tuple[dict[tuple[int, int], str], dict[int, str], bool]:
    t = tables.cuda_drivers()
    mins = {parse_cuda(k): v for k, v in t.min_driver.items()}
    floors = {int(k): v for k, v in t.minor_version_compat.items()}
    return mins, floors, t.ptx_jit_under_compat


# --- architectures ---------------------------------------------------------------------
def arch_for(cc: str | CC) -> Arch | None:
    return arch_table().get(parse_cc(cc))


def arch_name(cc: str | CC) -> str:
    a = arch_for(cc)
    return a.arch if a else "unknown architecture"


def min_cuda_for(cc: str | CC) -> str | None:
    """The first CUDA that compiles for this CC."""
    a = arch_for(cc)
    return a.first_cuda if a else None


def last_cuda_for(cc: str | CC) -> str | None:
    """The last CUDA that still compiles for this CC (None: every current CUDA does)."""
    a = arch_for(cc)
    return a.last_cuda if a else None


def cc_from_name(name: str) -> str | None:
    """The CC of a GPU by its marketing name, for nvidia-smi builds that cannot report it."""
    low = name.lower()
    return next((cc for pat, cc in _names() if pat.search(low)), None)


# --- drivers ---------------------------------------------------------------------------
def min_driver_for(cuda: str) -> str | None:
    """The Linux driver that fully supports this CUDA (release notes, table 3)."""
    return _drivers()[0].get(parse_cuda(cuda))


def compat_floor_for(cuda: str) -> str | None:
    """The lowest driver that runs this CUDA under minor-version compatibility."""
    return _drivers()[1].get(parse_cuda(cuda)[0])


def max_cuda_for_driver(driver: str) -> str | None:
    """The highest CUDA in the table that this driver fully supports."""
    have = parse_driver(driver)
    ok = [c for c, d in _drivers()[0].items() if parse_driver(d) <= have]
    return f"{max(ok)[0]}.{max(ok)[1]}" if ok else None


def driver_supports(driver: str | None, cuda: str, cuda_max: str | None = None) -> DriverSupport:
    """full: every feature of ``cuda`` works; compat: runs under minor-version
    compatibility (no PTX JIT of newer PTX, some APIs missing); no: does not start.
    ``cuda_max`` is what the driver itself reports (nvidia-smi header / NVML), which
    beats the table when known."""
    want = parse_cuda(cuda)
    if cuda_max:
        if parse_cuda(cuda_max) >= want:
            return "full"
    elif driver:
        need = min_driver_for(cuda)
        if need is None:  # a CUDA the table does not know: go by the highest one it knows
            top = max_cuda_for_driver(driver)
            if top and parse_cuda(top) >= want:
                return "full"
        elif parse_driver(driver) >= parse_driver(need):
            return "full"
    else:
        return "unknown"
    floor = compat_floor_for(cuda)
    if driver and floor and parse_driver(driver) >= parse_driver(floor):
        return "compat"
    if not driver:
        return "unknown"
    return "no"


def ptx_jit_under_compat() -> bool:
    return _drivers()[2]
