"""Verdicts: can this GPU, with this driver, run a spec's torch or TensorFlow, and if not,
what fixes it. Built on the arithmetic of labctl/gpu/arith.py (compute capabilities,
CUDA, drivers) and the wheel fit of labctl/gpu/fit.py.

Why: what broke the learner (an RTX 50xx with a CUDA 11.7 wheel, a driver too old for a
wheel's CUDA) is decided by a few published tables. Keeping them as data files with
their sources (labctl/tables/gpu_arch.yaml, cuda_drivers.yaml, torch_wheels.yaml,
tf_wheels.yaml) makes a new GPU or wheel release a one-line change, and lets every rule
be unit tested without a GPU. Nothing here probes the machine or talks to an engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion

from labctl.config.spec import GpuSpec
from labctl.gpu import tables, torch_wheels
from labctl.gpu.arith import (  # noqa: F401 (the arithmetic, also asked for through here)
    CC,
    DriverSupport,
    arch_for,
    arch_name,
    arch_table,
    cc_from_name,
    cc_str,
    compat_floor_for,
    cuda_variant,
    driver_supports,
    last_cuda_for,
    max_cuda_for_driver,
    min_cuda_for,
    min_driver_for,
    parse_cc,
    parse_cuda,
    parse_driver,
    ptx_jit_under_compat,
    variant_cuda,
)
from labctl.gpu.fit import (  # noqa: F401 (the wheel fit, also asked for through here)
    ArchList,
    Runs,
    Wheel,
    best_wheel,
    kernels_run_on,
    parse_arch_list,
    parse_torch_arch_list,
    torch_minor,
    wheel_archs,
    wheel_fits,
    wheel_runs_on,
    wheels,
)
from labctl.gpu.tables import TfBuild

if TYPE_CHECKING:
    from labctl.config.spec import ImageSpec

Status = Literal["ok", "warn", "fail", "skip"]
_RANK = {"ok": 0, "skip": 0, "warn": 1, "fail": 2}


# --- verdicts -------------------------------------------------------------------------
class GpuLike(Protocol):
    name: str
    cc: str | None
    driver: str | None
    cuda_max: str | None


@dataclass(frozen=True)
class Verdict:
    status: Status
    message: str
    fix: str = ""


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: _RANK[s], default="ok")


def driver_fix(cuda: str) -> str:
    need = min_driver_for(cuda) or compat_floor_for(cuda) or "a newer version"
    branch = parse_driver(need)[0] if need[0].isdigit() else None
    pkg = f" (e.g. `sudo apt install nvidia-driver-{branch}` on Ubuntu)" if branch else ""
    return f"update the NVIDIA driver to >= {need} for CUDA {cuda}{pkg}"


@dataclass(frozen=True)
class Assessment:
    """What a build with CUDA ``cuda`` and ``archs`` means on one GPU."""

    status: Status
    problems: list[str]
    notes: list[str]
    kernels_ok: bool  # the build has code for the GPU and its CUDA targets it
    driver: DriverSupport


def _kernel_rules(cuda: str, archs: ArchList | None, gpu: GpuLike, label: str,
                  problems: list[str], notes: list[str], statuses: list[Status]
                  ) -> tuple[Runs, bool]:
    """(how the build's kernels run on the GPU, whether it has code for it): the GPU
    half of the rules, which the driver half needs (PTX cannot JIT under compat)."""
    if gpu.cc is None:
        notes.append(f"the compute capability of {gpu.name} is unknown")
        statuses.append("warn")
        return "unknown", True
    cc = cc_str(gpu.cc)
    where = f"CC {cc} ({arch_name(cc)})"
    first, last = min_cuda_for(cc), last_cuda_for(cc)
    runs: Runs = "unknown" if archs is None else kernels_run_on(archs, cc)
    too_old = first is not None and parse_cuda(cuda) < parse_cuda(first)
    too_new = last is not None and parse_cuda(cuda) > parse_cuda(last)
    if runs == "no" or (runs == "unknown" and (too_old or too_new)) or (
        runs == "ptx" and too_old
    ):
        statuses.append("fail")
        kernels = f" ({archs.describe()})" if archs is not None else ""
        if too_old:
            problems.append(f"{where} needs CUDA >= {first} but {label} bundles CUDA "
                            f"{cuda} and has no kernels for it{kernels}")
        elif too_new:
            problems.append(f"CUDA {cuda} dropped {where} (its last CUDA is {last}): "
                            f"{label} has no kernels for it{kernels}")
        else:
            problems.append(f"{label} has no kernels for {where}{kernels}")
        return runs, False
    if runs == "cubin" and too_old:
        statuses.append("warn")
        notes.append(f"{label} (CUDA {cuda}) predates {where}, first targeted by CUDA "
                     f"{first}: its same-major kernels are binary compatible but untested")
    elif runs == "ptx":
        statuses.append("warn")
        notes.append(f"{label} has no cubin for {where}, only PTX: the driver JIT-compiles "
                     "it at first use (slow start, cached afterwards)")
    elif runs == "unknown":
        statuses.append("warn")
        notes.append(f"labctl's table has no arch list for {label}")
    else:
        notes.append(f"{label} has kernels for {where}")
    return runs, True


def _driver_rules(cuda: str, runs: Runs, gpu: GpuLike, problems: list[str],
                  notes: list[str], statuses: list[Status]) -> DriverSupport:
    """Whether the driver runs the build's CUDA: the machine half of the rules, apart
    from the GPU's since a driver update fixes it without a rebuild."""
    support = driver_supports(gpu.driver, cuda, gpu.cuda_max)
    have = gpu.cuda_max or (max_cuda_for_driver(gpu.driver) if gpu.driver else None)
    drv = f"driver {gpu.driver or '?'}" + (f" (CUDA <= {have})" if have else "")
    if support == "no":
        statuses.append("fail")
        floor = compat_floor_for(cuda)
        problems.append(f"{drv} cannot run CUDA {cuda}"
                        + (f" (needs >= {min_driver_for(cuda) or floor})" if floor else ""))
    elif support == "compat":
        if runs == "ptx" and not ptx_jit_under_compat():
            statuses.append("fail")
            problems.append(f"{drv} runs CUDA {cuda} only under minor-version compatibility, "
                            "which cannot JIT the PTX this GPU needs")
        else:
            statuses.append("warn")
            notes.append(f"{drv} runs CUDA {cuda} only under minor-version compatibility "
                         f"(limited features; full support from {min_driver_for(cuda)})")
    elif support == "unknown":
        statuses.append("warn")
        notes.append("the driver version is unknown")
    else:
        notes.append(f"{drv} supports CUDA {cuda}")
    return support


def assess(cuda: str, archs: ArchList | None, gpu: GpuLike, label: str) -> Assessment:
    """The rules, shared by the spec check (archs from the table) and the image check
    (archs reported by torch inside the image)."""
    problems: list[str] = []
    notes: list[str] = []
    statuses: list[Status] = []
    # the GPU's findings come first in each list, then the driver's
    runs, kernels_ok = _kernel_rules(cuda, archs, gpu, label, problems, notes, statuses)
    support = _driver_rules(cuda, runs, gpu, problems, notes, statuses)
    return Assessment(worst(statuses), problems, notes, kernels_ok, support)


def _spec_file(spec: ImageSpec) -> str:
    return f"images/{spec.name}.yaml"


GpuUse = Literal["required", "wanted", "optional", "no"]


def gpu_use(spec: ImageSpec) -> GpuUse:
    """How a lab uses the GPU: required / wanted (a gpu: mapping), optional (a CUDA torch
    wheel and no gpu: key: the GPU where there is one, the CPU elsewhere), no (gpu: false,
    a CPU wheel, no torch)."""
    if spec.gpu is False:
        return "no"
    if spec.gpu is not None:
        return "required" if spec.gpu.required else "wanted"
    if spec.torch is not None:
        cu = torch_wheels.wheel_cuda(spec.torch.version, spec.torch.variant)
        if cu and cu.startswith("cu"):
            return "optional"
    tf = tensorflow_of(spec)
    return "optional" if tf is not None and tf.cuda_libs else "no"


def verdict(spec: ImageSpec, gpu: GpuLike | None) -> Verdict:
    """Can this spec's image use this GPU? ok / warn / fail, why, and the spec or driver
    change that fixes it. The wheel's CUDA decides, not the torch version alone."""
    tf = tensorflow_of(spec) if spec.torch is None else None
    if tf is not None:
        return tf_verdict(spec, tf, gpu)
    use = gpu_use(spec)
    wants_gpu = use != "no"
    torch = spec.torch
    if torch is None and not wants_gpu:
        return Verdict("ok", "no torch and no gpu: key: nothing here needs a GPU")
    cu = torch_wheels.wheel_cuda(torch.version, torch.variant) if torch else None
    if gpu is None or not wants_gpu:
        return _no_gpu_verdict(use, gpu is None, "torch")
    if torch is not None and cu == "cpu":
        best = best_wheel(gpu.cc, gpu.driver, gpu.cuda_max) if gpu.cc else None
        fix = (f"set {best.spec_line(_has_vision(spec))} in {_spec_file(spec)}" if best
               else f"set torch.variant to a CUDA variant in {_spec_file(spec)}")
        return Verdict("fail", f"torch {torch.version} variant cpu has no CUDA: the GPU "
                       "cannot be used", fix)
    if torch is not None and cu is None:
        return Verdict("warn", f"torch {torch.version} is not in labctl's wheel table: its "
                       "CUDA is unknown",
                       f"name the variant, e.g. torch: {{version: '{torch.version}', "
                       "variant: cu128}, and check the image with `labctl doctor --image`")
    if torch is None or cu is None:  # no torch: the spec's CUDA is all there is to check
        cuda = spec.gpu.cuda if isinstance(spec.gpu, GpuSpec) else "0.0"
        label, archs = f"CUDA {cuda} (gpu: key)", None
    else:
        cuda = variant_cuda(cu) or "0.0"
        label, archs = f"torch {torch.version}+{cu}", wheel_archs(torch.version, torch.variant)
    a = assess(cuda, archs, gpu, label)
    extra: list[str] = []
    if isinstance(spec.gpu, GpuSpec) and torch is not None and \
            parse_cuda(spec.gpu.cuda) != parse_cuda(cuda):
        extra.append(f"gpu.cuda says {spec.gpu.cuda} but the wheel bundles CUDA {cuda}: "
                     "the wheel decides")
    status = worst([a.status, "warn" if extra else "ok"])
    message = "; ".join(a.problems if status == "fail" else a.notes + extra)
    return Verdict(status, message, _fix(spec, gpu, a, cuda, status, extra))


def _has_vision(spec: ImageSpec) -> bool:
    return bool(spec.torch and any("torchvision" in p for p in spec.torch.packages))


def _fix(spec: ImageSpec, gpu: GpuLike, a: Assessment, cuda: str, status: Status,
         extra: list[str]) -> str:
    """The one change to make: the spec's wheel when the GPU lacks kernels, the driver
    (or a wheel the driver supports) when only the driver is short."""
    if status == "ok":
        return ""
    if gpu.cc is None:
        return ("look up the GPU's compute capability on developer.nvidia.com/cuda-gpus and "
                "add its name to labctl/data/gpu_arch.yaml")
    where = _spec_file(spec)
    vision = _has_vision(spec)

    def change(w: Wheel) -> str:
        return f"set {w.spec_line(vision)} and gpu: {{cuda: '{w.cuda}'}} in {where}"

    best_now = best_wheel(gpu.cc, gpu.driver, gpu.cuda_max)
    if not a.kernels_ok:
        if best_now:
            return change(best_now)
        best_any = best_wheel(gpu.cc)
        if best_any:
            old_driver = best_wheel(gpu.cc, gpu.driver, gpu.cuda_max, allow_compat=True)
            alt = (f"; or keep the driver and {change(old_driver)} (minor-version "
                   "compatibility)" if old_driver else "")
            return f"{driver_fix(best_any.cuda)}, then {change(best_any)}{alt}"
        return f"no PyTorch wheel in labctl's table supports CC {cc_str(gpu.cc)}"
    if a.driver in ("no", "compat"):
        alt = f"; or keep the driver and {change(best_now)}" if best_now else ""
        return driver_fix(cuda) + alt
    if a.status == "warn" and best_now and variant_cuda(best_now.variant) != cuda:
        return change(best_now)
    if extra:
        return f"set gpu: {{cuda: '{cuda}'}} in {where}"
    return ""


def _no_gpu_verdict(use: GpuUse, no_gpu_here: bool, framework: str) -> Verdict:
    """The verdict of a lab that will not use a GPU, either way round."""
    if not no_gpu_here:
        return Verdict("ok", "CPU spec (gpu: false, or no CUDA): runs on the CPU; the GPU"
                       " stays unused")
    if use == "optional":
        return Verdict("ok", f"runs on the CPU here; its CUDA {framework} uses the GPU on a"
                       " machine that has one")
    if use != "no":
        return Verdict("warn", "the spec asks for a GPU (gpu: key) but this machine has "
                       "none that labctl can see: it will run on the CPU",
                       "install the NVIDIA driver if this machine has an NVIDIA GPU; "
                       "otherwise train on the CPU (smaller models, fewer epochs)")
    return Verdict("ok", "CPU spec: runs without a GPU")


# --- TensorFlow ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TfReq:
    """The spec's TensorFlow requirement."""

    line: str
    version: str | None  # the pinned version; None when the spec does not pin one
    cuda_libs: bool  # tensorflow[and-cuda]: CUDA, cuDNN and NCCL from PyPI


def tensorflow_of(spec: ImageSpec) -> TfReq | None:
    for line in spec.pip:
        try:
            req = Requirement(str(line))
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if name in ("tensorflow", "tensorflow-cpu"):
            pins = [s.version for s in req.specifier if s.operator in ("==", "===")]
            return TfReq(str(line), pins[0] if pins else None,
                         name == "tensorflow" and "and-cuda" in req.extras)
    return None


def tf_build(version: str) -> TfBuild | None:
    """The table's row for this TensorFlow release (by major.minor)."""
    try:
        minor = torch_minor(version)
    except InvalidVersion:
        return None
    return next((b for b in tables.tf_wheels().builds if b.tensorflow == minor), None)


def tf_archs(build: TfBuild) -> ArchList:
    return parse_torch_arch_list([a.strip() for a in build.archs.split(",") if a.strip()])


def _tf_fits(build: TfBuild, cc: str | CC) -> bool:
    first = min_cuda_for(cc)
    return (first is not None and parse_cuda(build.cuda) >= parse_cuda(first)
            and kernels_run_on(tf_archs(build), cc) in ("cubin", "ptx"))


def tf_verdict(spec: ImageSpec, tf: TfReq, gpu: GpuLike | None) -> Verdict:
    """Can this spec's TensorFlow use this GPU? The wheel's own CUDA and GPU code
    (tables/tf_wheels.yaml) decide; where no wheel has kernels for the GPU, the fix
    names what does work."""
    use = gpu_use(spec)
    where = _spec_file(spec)
    if gpu is None or use == "no":
        return _no_gpu_verdict(use, gpu is None, "TensorFlow")
    if not tf.cuda_libs:
        return Verdict("fail", f"{tf.line} installs no CUDA libraries: TensorFlow cannot "
                       "see the GPU", f"write tensorflow[and-cuda] in pip: of {where}")
    build = tf_build(tf.version) if tf.version else None
    if build is None:
        what = f"tensorflow {tf.version} is" if tf.version else f"{tf.line} is not pinned, so"
        return Verdict("warn", f"{what} not in labctl's table (tables/tf_wheels.yaml): its "
                       "CUDA and GPU code are unknown",
                       f"pin a release the table knows, or check the built image with "
                       f"`labctl doctor --image {spec.name}`")
    label = f"tensorflow {tf.version}"
    a = assess(build.cuda, tf_archs(build), gpu, label)
    extra: list[str] = []
    if isinstance(spec.gpu, GpuSpec) and parse_cuda(spec.gpu.cuda) != parse_cuda(build.cuda):
        extra.append(f"gpu.cuda says {spec.gpu.cuda} but the wheel bundles CUDA {build.cuda}")
    status = worst([a.status, "warn" if extra else "ok"])
    message = "; ".join(a.problems if status == "fail" else a.notes + extra)
    fix = ""
    if gpu.cc is not None and not a.kernels_ok:
        newer = [b for b in tables.tf_wheels().builds if _tf_fits(b, gpu.cc)]
        fix = (f"pin tensorflow[and-cuda]=={newer[-1].tensorflow}.* in {where}" if newer
               else "; or ".join(tables.tf_wheels().no_kernels_fix))
    elif a.driver in ("no", "compat"):
        fix = driver_fix(build.cuda)
    elif extra:
        major, minor = parse_cuda(build.cuda)
        fix = f"set gpu: {{cuda: '{major}.{minor}'}} in {where}"
    return Verdict(status, message, fix)
