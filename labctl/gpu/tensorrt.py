"""TensorRT: which release a spec installs, and whether a GPU, its driver and an image can
use it. Pure rules over tables/tensorrt.yaml and the GPU and driver tables.

Why: TensorRT builds engines for the GPU it runs on, and each release supports a fixed set
of compute capabilities (Blackwell from 10.8, Volta until 10.4), so "can I export
format=engine here" is a table lookup, known before a download of gigabytes. A lab
without TensorRT still exports ONNX and runs it with onnxruntime."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from labctl.config.spec import GpuSpec
from labctl.errors import LabError
from labctl.gpu import compat, torch_wheels
from labctl.gpu.compat import GpuLike, Verdict
from labctl.gpu.tables import TensorRtTable, TrtRelease
from labctl.gpu.tables import tensorrt as table

if TYPE_CHECKING:
    from labctl.config.spec import ImageSpec


def _minor(version: str) -> str | None:
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    return f"{v.major}.{v.minor}"


def release(version: str) -> TrtRelease | None:
    """The table row a spec names: 'default' (tensorrt: true), a release as major.minor
    ('10.16'), or its exact pip version ('10.16.1.11'); anything else (a '10', another
    patch) is no row, rather than a guess."""
    t = table()
    if version == "default":
        version = t.default
    if re.fullmatch(r"\d+\.\d+", version):
        return release_of(version)
    return next((r for r in t.releases if r.pip == version), None)


def release_of(installed: str) -> TrtRelease | None:
    """The row of a TensorRT an image has (trt.__version__), by its major.minor."""
    key = _minor(installed)
    return next((r for r in table().releases if r.tensorrt == key), None)


def ccs(rel: TrtRelease) -> tuple[compat.CC, ...]:
    return tuple(compat.parse_cc(c) for c in table().cc_sets[rel.ccs])


def supports(rel: TrtRelease, cc: str) -> bool:
    return compat.parse_cc(cc) in ccs(rel)


def fitting(cc: str) -> list[TrtRelease]:
    """The releases with code for this compute capability, newest first."""
    return sorted((r for r in table().releases if supports(r, cc)),
                  key=lambda r: Version(r.tensorrt), reverse=True)


def min_driver(rel: TrtRelease, cc: str | None) -> str:
    """The driver this release needs on this GPU: what the release states (else CUDA 12's
    minor-version-compatibility floor), and the GPU's own floor (its first CUDA: R570 for
    Blackwell), whichever is higher."""
    t: TensorRtTable = table()
    floors = [rel.min_driver or compat.compat_floor_for(f"{t.cuda_major}.0") or "0"]
    first = compat.min_cuda_for(cc) if cc else None
    if first and compat.parse_cuda(first)[0] == int(t.cuda_major):
        floors.append(compat.min_driver_for(first) or "0")
    return max(floors, key=compat.parse_driver)


def spec_cuda(spec: ImageSpec) -> str | None:
    """The CUDA the spec's wheels bundle ('12.8'), None for a CPU spec."""
    if spec.torch is not None:
        return compat.variant_cuda(torch_wheels.wheel_cuda(spec.torch.version,
                                                           spec.torch.variant))
    return spec.gpu.cuda if isinstance(spec.gpu, GpuSpec) else None


def for_spec(spec: ImageSpec) -> TrtRelease | None:
    """The release the spec's `tensorrt:` installs, None without the key; a LabError
    (file:line, key, fix) where that release cannot go into this image."""
    if spec.tensorrt is None:
        return None
    t = table()
    where = spec.locate("tensorrt")
    known = ", ".join(r.tensorrt for r in t.releases)
    rel = release(spec.tensorrt)
    if rel is None:
        raise LabError(f"{where}: tensorrt: '{spec.tensorrt}' is not a TensorRT release "
                       "labctl knows (labctl/tables/tensorrt.yaml)", id="gpu.unknown-tensorrt",
                       fix=f"name a release as major.minor ({known}) or its exact pip "
                           f"version, or write tensorrt: true (= {t.default})")
    if spec.gpu is False:
        raise LabError(f"{where}: tensorrt: builds engines for a GPU, and this spec says "
                       f"gpu: false ({spec.locate('gpu')})", id="gpu.tensorrt-without-gpu",
                       fix="add tensorrt: to a spec that uses the GPU (e.g. one that "
                           "extends: yolo-gpu), or remove it")
    cuda = spec_cuda(spec)
    if cuda is None:
        raise LabError(f"{where}: tensorrt: needs CUDA, and this spec's torch has none "
                       "(a CPU wheel, or no torch)", id="gpu.tensorrt-without-cuda",
                       fix="give the spec a CUDA 12 torch, e.g. extends: yolo-gpu, or "
                           "remove tensorrt: (ONNX export and onnxruntime work without it)")
    if str(compat.parse_cuda(cuda)[0]) != t.cuda_major:
        raise LabError(f"{where}: TensorRT's pip packages here are built for CUDA "
                       f"{t.cuda_major}, and this spec's torch bundles CUDA {cuda}",
                       id="gpu.tensorrt-cuda-mismatch",
                       fix="use a torch of CUDA 12, e.g. torch: {version: '2.10.0', "
                           "variant: cu128}, or remove tensorrt:")
    lo, hi = (Version(p) for p in rel.python)
    if not lo <= Version(spec.python) <= hi:
        raise LabError(f"{where}: TensorRT {rel.tensorrt} has wheels for Python "
                       f"{rel.python[0]}-{rel.python[1]}, and the spec has python: "
                       f"{spec.python}", id="gpu.tensorrt-python-mismatch",
                       fix=f"set python: \"{rel.python[1]}\" or another TensorRT release")
    return rel


def requirements(rel: TrtRelease) -> list[str]:
    """Every TensorRT package pinned to the same version: a looser pin once pulled a
    mismatched tensorrt-cu12 (tensorrt 10.0.1 did not pin it)."""
    return [f"{p}=={rel.pip}" for p in table().packages]


def index_url() -> str:
    return table().index_url


def _line(rel: TrtRelease) -> str:
    return "tensorrt: true" if rel.tensorrt == table().default else \
        f'tensorrt: "{rel.tensorrt}"'


def _driver_ok(rel: TrtRelease, gpu: GpuLike) -> bool:
    need = min_driver(rel, gpu.cc)
    return not gpu.driver or compat.parse_driver(gpu.driver) >= compat.parse_driver(need)


def verdict(spec: ImageSpec, gpu: GpuLike) -> Verdict:
    """Can this GPU and its driver use TensorRT in this spec's image? For a spec without
    `tensorrt:`, whether adding it would work, and the line to add."""
    where = compat._spec_file(spec)
    cc = gpu.cc
    if cc is None:
        return Verdict("skip", f"{gpu.name}: compute capability unknown, so TensorRT's "
                       "support is unknown")
    arch = f"CC {compat.cc_str(cc)} ({compat.arch_name(cc)})"
    fits = fitting(cc)
    now = next((r for r in fits if _driver_ok(r, gpu)), None)  # with this driver
    rel = for_spec(spec)
    if rel is None:
        if not fits:
            return Verdict("ok", f"TensorRT: not in this image, and no TensorRT 10 release "
                           f"supports {arch}; ONNX export and onnxruntime work here")
        pick = now or fits[0]
        try:
            for_spec(spec.model_copy(update={"tensorrt": pick.tensorrt}))
        except LabError as e:
            return Verdict("ok", f"TensorRT: not in this image, and this spec cannot have "
                           f"it: {e.message.split(': ', 1)[-1]}", e.fix or "")
        later = "" if now is fits[0] else (
            f" (TensorRT {fits[0].tensorrt} once the driver is >= "
            f"{min_driver(fits[0], cc)})")
        if now is None:
            return Verdict("ok", f"TensorRT: not in this image; {arch} can use TensorRT "
                           f"{pick.tensorrt} once the driver is >= {min_driver(pick, cc)}; "
                           f"then add {_line(pick)} to {where} to export TensorRT engines")
        return Verdict("ok", f"TensorRT: not in this image; {arch} can use TensorRT "
                       f"{pick.tensorrt}{later}: add {_line(pick)} to {where} to export "
                       "TensorRT engines")
    label = f"TensorRT {rel.tensorrt} ({rel.pip})"
    if not supports(rel, cc):
        fix = (f'set tensorrt: "{(now or fits[0]).tensorrt}" in {where}' if fits else
               f"remove tensorrt: from {where}: no TensorRT 10 release supports {arch}; "
               "export to ONNX and run it with onnxruntime")
        return Verdict("fail", f"{label} has no code for {arch}", fix)
    if not _driver_ok(rel, gpu):
        need = min_driver(rel, cc)
        branch = compat.parse_driver(need)[0]
        alt = f', or set tensorrt: "{now.tensorrt}" in {where}' if now else ""
        return Verdict("fail", f"{label} on {arch} needs driver >= {need}, this one is "
                       f"{gpu.driver}", f"update the NVIDIA driver to >= {need} (e.g. `sudo "
                       f"apt install nvidia-driver-{branch}` on Ubuntu){alt}")
    return Verdict("ok", f"{label} supports {arch} on driver {gpu.driver or '?'}")
