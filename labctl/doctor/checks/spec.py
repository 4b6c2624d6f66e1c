"""Per-spec checks: the spec's torch wheel and CUDA against each GPU, its driver and the
engine's GPU support. Pure decisions live in labctl.compat; this only wires them up."""

from __future__ import annotations

from pathlib import Path

from labctl.config.spec import GpuSpec, ImageSpec
from labctl.doctor.checks.containers import RUNTIME_FIX
from labctl.doctor.context import Context
from labctl.doctor.registry import Finding
from labctl.errors import LabError
from labctl.gpu import compat, tensorrt, torch_wheels
from labctl.image.disk import human


def _specs(ctx: Context) -> list[tuple[str, ImageSpec | LabError]] | Finding:
    """Each spec of the lab, loaded and its torch variant resolved, or the error that
    stopped it; a skip Finding outside a lab or in one without specs."""
    if ctx.lab is None:
        return Finding("skip", "not in a lab folder: no specs to check")
    names = ctx.spec_names()
    if not names:
        return Finding("skip", "the lab has no specs (images/*.yaml)")
    out: list[tuple[str, ImageSpec | LabError]] = []
    for name in names:
        try:
            spec = ctx.spec(name)
            if spec.torch:
                torch_wheels.index_url(spec.torch.version, spec.torch.variant,
                                       ctx.lab.settings.network.torch_index)
            out.append((name, spec))
        except LabError as e:
            out.append((name, e))
    return out


def _loaded(ctx: Context) -> list[tuple[str, ImageSpec]] | Finding:
    """The specs that loaded (the others are spec.gpu's findings)."""
    specs = _specs(ctx)
    if isinstance(specs, Finding):
        return specs
    return [(n, s) for n, s in specs if not isinstance(s, LabError)]


def spec_gpu(ctx: Context) -> list[Finding]:
    specs = _specs(ctx)
    if isinstance(specs, Finding):
        return [specs]
    out = []
    for name, spec in specs:
        if isinstance(spec, LabError):
            detail = f" ({'; '.join(spec.details[:3])})" if spec.details else ""
            out.append(Finding("fail", spec.message + detail, spec.fix or "", name, name))
            continue
        gpus = ctx.probe.gpus
        if not gpus or compat.gpu_use(spec) == "no":  # a CPU spec: one row, whatever GPUs
            v = compat.verdict(spec, None)
            out.append(Finding(v.status, v.message, v.fix, name, name))
            continue
        for g in gpus:
            v = compat.verdict(spec, g)
            out.append(Finding(v.status, v.message, v.fix, f"{name}.gpu{g.index}",
                               f"{name} on GPU {g.index}"))
    return out


def spec_engine_gpu(ctx: Context) -> list[Finding]:
    specs = _loaded(ctx)
    if isinstance(specs, Finding):
        return [specs]
    out = []
    for name, spec in specs:
        if compat.gpu_use(spec) == "no":
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


def spec_cuda_cost(ctx: Context) -> list[Finding]:
    """On an engine without an NVIDIA GPU, what each CUDA torch lab's CUDA libraries cost
    there (never used) and how to get the CPU wheel instead."""
    specs = _loaded(ctx)
    if isinstance(specs, Finding):
        return [specs]
    if ctx.engine is None:
        return [Finding("skip", "the engine does not answer")]
    if ctx.gpu_mode != "none":
        return [Finding("skip", "the engine has a GPU: the CUDA libraries are used")]
    out = []
    for name, spec in specs:
        if spec.torch is None:
            continue
        cost = torch_wheels.cuda_cost(spec.torch.version, spec.torch.variant)
        if cost is None:
            continue
        title = f"{name}: CUDA on a GPU-less engine"
        if isinstance(spec.gpu, GpuSpec) and spec.gpu.required:
            out.append(Finding("skip", "the lab requires a GPU", "", name, title))
            continue
        cpu = torch_wheels.index_url(spec.torch.version, "cpu",
                                     ctx.lab.settings.network.torch_index if ctx.lab else None)
        cu = torch_wheels.wheel_cuda(spec.torch.version, spec.torch.variant)
        wheel = f"{spec.torch.version}+{cu}"
        out.append(Finding(
            "warn", f"torch {wheel} brings about {human(cost.cuda_bytes)} of CUDA libraries,"
            f" never used on this engine; torch's CPU wheel is about {human(cost.torch_bytes)}"
            f" (measured in {cost.measured})",
            f"set torch.variant: cpu (or auto: the CUDA wheel only where the engine has a GPU)"
            f" in images/{Path(spec.file_of('torch')).name}; the CPU wheel comes from {cpu}"
            " (network.torch_index in labctl.yaml names a mirror of PyTorch's index)",
            name, title))
    return out or [Finding("skip", "no lab here has a CUDA torch wheel")]


def spec_tensorrt(ctx: Context) -> list[Finding]:
    """Can each GPU spec use TensorRT here: with `tensorrt:`, whether its release supports
    this GPU and driver; without, whether one would (and the line that adds it)."""
    specs = _loaded(ctx)
    if isinstance(specs, Finding):
        return [specs]
    out = []
    for name, spec in specs:
        if not spec.tensorrt and not (spec.torch and compat.gpu_use(spec) in ("required",
                                                                             "wanted")):
            continue  # TensorRT matters to the labs that deploy to a GPU (a gpu: mapping)
        title = f"{name}: TensorRT"
        try:
            rel = tensorrt.for_spec(spec)
        except LabError as e:
            out.append(Finding("fail", e.message, e.fix or "", name, title))
            continue
        if not ctx.probe.gpus:
            what = f"the spec asks for TensorRT {rel.tensorrt}, but" if rel else "TensorRT:"
            out.append(Finding("warn" if rel else "skip", f"{what} it needs an NVIDIA GPU, and"
                               " this machine has none (ONNX export and onnxruntime run on"
                               " the CPU)", "", name, title))
            continue
        for g in ctx.probe.gpus:
            v = tensorrt.verdict(spec, g)
            out.append(Finding(v.status, v.message, v.fix, f"{name}.gpu{g.index}",
                               f"{title} on GPU {g.index}"))
    return out or [Finding("skip", "no spec deploys to a GPU (gpu: mapping or tensorrt:)")]
