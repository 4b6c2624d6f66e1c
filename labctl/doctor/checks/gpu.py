"""GPU checks: the driver, and each GPU with what it can run."""

from __future__ import annotations

from labctl.doctor.context import Context
from labctl.doctor.registry import Finding
from labctl.gpu import compat
from labctl.gpu.probe import Gpu

DRIVER_BROKEN_FIX = (
    "the NVIDIA kernel module is not loaded: reboot after installing or updating the "
    "driver; check `lsmod | grep nvidia` and `sudo dmesg | grep -i nvidia` (with Secure "
    "Boot on, the module must be signed: `mokutil --sb-state`)"
)


def driver(ctx: Context) -> Finding:
    p = ctx.probe
    if p.problem:
        return Finding("warn", f"an NVIDIA driver is installed but does not answer: {p.problem}",
                       DRIVER_BROKEN_FIX)
    if not p.gpus:
        why = f" ({'; '.join(p.notes)})" if p.notes else ""
        return Finding("ok", f"no NVIDIA GPU found{why}: labs run on the CPU")
    cuda = f", CUDA <= {p.cuda_max}" if p.cuda_max else ""
    notes = f"; {'; '.join(p.notes)}" if p.notes else ""
    return Finding("ok", f"driver {p.driver}{cuda} (via {p.source}){notes}")


def gpu_finding(g: Gpu) -> Finding:
    """One GPU: what it is, and what the newest PyTorch is that runs on it with this driver."""
    mem = f", {g.memory_mib / 1024:.1f} GiB" if g.memory_mib else ""
    cuda = f", CUDA <= {g.cuda_max}" if g.cuda_max else ""
    head = f"{g.name}: "
    tail = f"{mem}, driver {g.driver or '?'}{cuda}"
    subject, title = f"gpu{g.index}", f"GPU {g.index}"
    if g.cc is None:
        return Finding("warn", head + "compute capability unknown" + tail,
                       "look up its compute capability on developer.nvidia.com/cuda-gpus and "
                       "add the name to labctl/data/gpu_arch.yaml", subject, title)
    origin = " (from the GPU name table)" if g.cc_source == "name table" else ""
    desc = head + f"CC {g.cc} ({compat.arch_name(g.cc)}){origin}" + tail
    if compat.arch_for(g.cc) is None:
        return Finding("warn", desc + "; labctl does not know this compute capability",
                       "add it to labctl/data/gpu_arch.yaml", subject, title)
    now = compat.best_wheel(g.cc, g.driver, g.cuda_max)
    best = compat.best_wheel(g.cc)
    if best is None:
        return Finding("fail", desc + "; no PyTorch wheel in labctl's table runs on it", "",
                       subject, title)
    if now is None:
        compat_wheel = compat.best_wheel(g.cc, g.driver, g.cuda_max, allow_compat=True)
        alt = (f"; only torch {compat_wheel.torch}+{compat_wheel.variant} runs, under "
               "minor-version compatibility" if compat_wheel else "; no PyTorch wheel runs")
        return Finding("warn", desc + f"; this driver is too old for current PyTorch{alt}",
                       compat.driver_fix(best.cuda), subject, title)
    newest = f"; newest PyTorch for it: {now.torch}+{now.variant}"
    if best != now:
        newest += (f" (torch {best.torch}+{best.variant} needs driver >= "
                   f"{compat.min_driver_for(best.cuda)})")
    return Finding("ok", desc + newest, "", subject, title)


def devices(ctx: Context) -> list[Finding]:
    if not ctx.probe.gpus:
        return [Finding("skip", "no GPU to describe")]
    return [gpu_finding(g) for g in ctx.probe.gpus]
