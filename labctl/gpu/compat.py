"""GPU / CUDA / driver / torch- and TensorFlow-wheel compatibility: pure functions over
data tables.

Why: what broke the learner (an RTX 50xx with a CUDA 11.7 wheel, a driver too old for a
wheel's CUDA) is decided by a few published tables. Keeping them as data files with
their sources (labctl/tables/gpu_arch.yaml, cuda_drivers.yaml, torch_wheels.yaml,
tf_wheels.yaml) makes a new GPU or wheel release a one-line change, and lets every rule
be unit tested without a GPU. Nothing here probes the machine or talks to an engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from labctl.config.spec import GpuSpec
from labctl.gpu import tables, torch_wheels
from labctl.gpu.tables import Arch, TfBuild

if TYPE_CHECKING:
    from labctl.config.spec import ImageSpec

CC = tuple[int, int]
Status = Literal["ok", "warn", "fail", "skip"]
DriverSupport = Literal["full", "compat", "no", "unknown"]
Runs = Literal["cubin", "ptx", "no", "unknown"]
_RANK = {"ok": 0, "skip": 0, "warn": 1, "fail": 2}


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


@cache
def _arch_lists() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for row in tables.torch_wheels().archs:
        for minor in row.torch:
            out[(minor, row.variant)] = row.arch_list
    return out


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


# --- wheels ----------------------------------------------------------------------------
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


def _minor(version: str) -> str:
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
        text = _arch_lists().get((_minor(torch_version), cu))
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


def assess(cuda: str, archs: ArchList | None, gpu: GpuLike, label: str) -> Assessment:
    """The rules, shared by the spec check (archs from the table) and the image check
    (archs reported by torch inside the image)."""
    problems: list[str] = []
    notes: list[str] = []
    statuses: list[Status] = []
    kernels_ok = True
    if gpu.cc is None:
        notes.append(f"the compute capability of {gpu.name} is unknown")
        statuses.append("warn")
        runs: Runs = "unknown"
    else:
        cc = cc_str(gpu.cc)
        where = f"CC {cc} ({arch_name(cc)})"
        first, last = min_cuda_for(cc), last_cuda_for(cc)
        runs = "unknown" if archs is None else kernels_run_on(archs, cc)
        too_old = first is not None and parse_cuda(cuda) < parse_cuda(first)
        too_new = last is not None and parse_cuda(cuda) > parse_cuda(last)
        if runs == "no" or (runs == "unknown" and (too_old or too_new)) or (
            runs == "ptx" and too_old
        ):
            kernels_ok = False
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
        elif runs == "cubin" and too_old:
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
        minor = _minor(version)
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
