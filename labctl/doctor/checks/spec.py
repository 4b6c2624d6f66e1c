"""Per-spec checks: the spec's torch wheel and CUDA against each GPU, its driver and the
engine's GPU support. Pure decisions live in labctl.compat; this only wires them up."""

from __future__ import annotations

from labctl import compat, torch_wheels
from labctl.doctor.checks.containers import RUNTIME_FIX
from labctl.doctor.context import Context
from labctl.doctor.registry import Finding, check
from labctl.errors import LabError


def _specs_or_skip(ctx: Context) -> list[str] | Finding:
    if ctx.lab is None:
        return Finding("skip", "not in a lab folder: no specs to check")
    names = ctx.spec_names()
    return names or Finding("skip", "the lab has no specs (images/*.yaml)")


@check("spec.gpu", "spec", "spec on this machine")
def spec_gpu(ctx: Context) -> list[Finding]:
    names = _specs_or_skip(ctx)
    if isinstance(names, Finding):
        return [names]
    out = []
    for name in names:
        try:
            spec = ctx.spec(name)
            if spec.torch:
                torch_wheels.index_url(spec.torch.version, spec.torch.variant)
        except LabError as e:
            detail = f" ({'; '.join(e.details[:3])})" if e.details else ""
            out.append(Finding("fail", e.message + detail, e.fix or "", name, name))
            continue
        gpus = ctx.probe.gpus
        if not gpus or spec.gpu is None:  # a CPU spec: one row, whatever the GPUs
            v = compat.verdict(spec, None)
            out.append(Finding(v.status, v.message, v.fix, name, name))
            continue
        for g in gpus:
            v = compat.verdict(spec, g)
            out.append(Finding(v.status, v.message, v.fix, f"{name}.gpu{g.index}",
                               f"{name} on GPU {g.index}"))
    return out


@check("spec.engine-gpu", "spec", "GPU reaches the container")
def spec_engine_gpu(ctx: Context) -> list[Finding]:
    names = _specs_or_skip(ctx)
    if isinstance(names, Finding):
        return [names]
    out = []
    for name in names:
        try:
            spec = ctx.spec(name)
        except LabError:
            continue  # reported by spec.gpu
        if spec.gpu is None:
            continue
        title = f"{name}: GPU in the container"
        if not ctx.probe.gpus:
            out.append(Finding("skip", "no NVIDIA GPU on this machine", "", name, title))
        elif ctx.engine is None:
            out.append(Finding("skip", "the engine does not answer", "", name, title))
        elif ctx.gpu_mode == "none":
            out.append(Finding("fail", "the engine cannot give this spec's container a GPU "
                               "(no NVIDIA runtime, no CDI spec)", RUNTIME_FIX, name, title))
        else:
            how = "the NVIDIA runtime" if ctx.gpu_mode == "runtime" else "CDI"
            out.append(Finding("ok", f"the engine attaches the GPU through {how}", "", name,
                               title))
    return out or [Finding("skip", "no spec asks for a GPU (gpu: key)")]
