"""labctl.compat over the whole of its tables: architectures, drivers, wheels, verdicts.

Pure functions only: no engine, no GPU. The expectations restate the sourced facts in
../shared/FACTS.md so that a wrong row in a data file fails here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from labctl.config.spec import ImageSpec, load_spec
from labctl.gpu import compat

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "images"


@dataclass(frozen=True)
class G:
    """A GPU as the doctor sees it (compat.GpuLike)."""

    name: str
    cc: str | None
    driver: str | None
    cuda_max: str | None


RTX5070TI = G("NVIDIA GeForce RTX 5070 Ti Laptop GPU", "12.0", "570.133.07", "12.8")
H100 = G("NVIDIA H100 80GB HBM3", "9.0", "570.124.06", "12.8")
GTX1080_470 = G("NVIDIA GeForce GTX 1080", "6.1", "470.256.02", "11.4")
RTX4090_535 = G("NVIDIA GeForce RTX 4090", "8.9", "535.183.01", "12.2")


def spec(name: str = "t", **kw: object) -> ImageSpec:
    return ImageSpec(name=name, **kw)


def gpu_spec(version: str, variant: str, cuda: str, name: str = "t") -> ImageSpec:
    return spec(name, torch={"version": version, "variant": variant,
                             "packages": ["torchvision"]}, gpu={"cuda": cuda})


# --- architectures: every row, Maxwell to Blackwell (and Kepler) --------------------------
ARCHS = {
    # cc: (architecture, first CUDA, last CUDA)
    "3.5": ("Kepler", "5.0", "11.8"),
    "3.7": ("Kepler", "6.5", "11.8"),
    "5.0": ("Maxwell", "6.0", "12.9"),
    "5.2": ("Maxwell", "6.5", "12.9"),
    "6.0": ("Pascal", "8.0", "12.9"),
    "6.1": ("Pascal", "8.0", "12.9"),
    "7.0": ("Volta", "9.0", "12.9"),
    "7.5": ("Turing", "10.0", None),
    "8.0": ("Ampere", "11.0", None),
    "8.6": ("Ampere", "11.1", None),
    "8.9": ("Ada", "11.8", None),
    "9.0": ("Hopper", "11.8", None),
    "10.0": ("Blackwell", "12.8", None),
    "10.3": ("Blackwell", "12.9", None),
    "12.0": ("Blackwell", "12.8", None),
    "12.1": ("Blackwell", "12.9", None),
}


def test_the_table_has_exactly_these_architectures() -> None:
    assert {compat.cc_str(cc) for cc in compat.arch_table()} == set(ARCHS)


@pytest.mark.parametrize("cc", sorted(ARCHS, key=compat.parse_cc))
def test_architecture_row(cc: str) -> None:
    arch, first, last = ARCHS[cc]
    assert compat.arch_name(cc) == arch
    assert compat.min_cuda_for(cc) == first
    assert compat.last_cuda_for(cc) == last
    assert compat.arch_for(compat.parse_cc(cc)).gpus  # examples are given


def test_unknown_cc() -> None:
    assert compat.arch_for("11.5") is None
    assert compat.arch_name("11.5") == "unknown architecture"
    assert compat.min_cuda_for("11.5") is None


# The newest PyTorch wheel labctl suggests for each architecture (no driver limit):
# PyPI's default wheel when it fits, else PyTorch's own index.
BEST = {
    "3.5": None,  # only sm_37 cubins were ever built for Kepler; none for 3.5
    "3.7": ("2.0.0", "cu117"),
    "5.0": ("2.7.0", "cu126"),
    "5.2": ("2.7.0", "cu126"),
    "6.0": ("2.7.0", "cu126"),
    "6.1": ("2.7.0", "cu126"),
    "7.0": ("2.10.0", "cu128"),  # CUDA 13 (torch 2.11+ default) dropped Volta
    "7.5": ("2.13.0", "cu130"),
    "8.0": ("2.13.0", "cu130"),
    "8.6": ("2.13.0", "cu130"),
    "8.9": ("2.13.0", "cu130"),
    "9.0": ("2.13.0", "cu130"),
    "10.0": ("2.13.0", "cu130"),
    "10.3": ("2.13.0", "cu130"),
    "12.0": ("2.13.0", "cu130"),
    "12.1": ("2.13.0", "cu130"),
}


@pytest.mark.parametrize("cc", sorted(BEST, key=compat.parse_cc))
def test_best_wheel_per_architecture(cc: str) -> None:
    w = compat.best_wheel(cc)
    assert (w.torch, w.variant) == BEST[cc] if w else BEST[cc] is None


@pytest.mark.parametrize(("cc", "driver", "cuda_max", "want"), [
    ("12.0", "570.133.07", "12.8", ("2.10.0", "cu128")),  # the learner's laptop
    ("12.0", "580.65.06", "13.0", ("2.13.0", "cu130")),
    ("9.0", "535.183.01", "12.2", ("2.4.0", "cu121")),
    ("6.1", "470.256.02", "11.4", None),  # no wheel fully supported by a CUDA 11.4 driver
    ("6.1", "560.28.03", None, ("2.7.0", "cu126")),
])
def test_best_wheel_for_a_driver(cc: str, driver: str, cuda_max: str | None,
                                 want: tuple[str, str] | None) -> None:
    w = compat.best_wheel(cc, driver, cuda_max)
    assert ((w.torch, w.variant) if w else None) == want


def test_best_wheel_under_minor_version_compat() -> None:
    w = compat.best_wheel("6.1", "470.256.02", "11.4", allow_compat=True)
    assert (w.torch, w.variant) == ("2.0.0", "cu117")


# --- names (for 470-branch drivers that cannot report compute_cap) ------------------------
@pytest.mark.parametrize(("name", "cc"), [
    ("NVIDIA GeForce GTX 1080", "6.1"),
    ("NVIDIA GeForce GTX 1080 Ti", "6.1"),
    ("NVIDIA GeForce GTX 1050 Ti", "6.1"),
    ("NVIDIA TITAN X (Pascal)", "6.1"),
    ("NVIDIA GeForce GTX TITAN X", "5.2"),
    ("NVIDIA GeForce GTX 980", "5.2"),
    ("NVIDIA GeForce GTX 750 Ti", "5.0"),
    ("Tesla K80", "3.7"),
    ("NVIDIA GeForce GTX 780", "3.5"),
    ("Tesla P100-PCIE-16GB", "6.0"),
    ("Tesla V100-SXM2-16GB", "7.0"),
    ("NVIDIA GeForce GTX 1660 SUPER", "7.5"),
    ("NVIDIA GeForce RTX 2080 Ti", "7.5"),
    ("Tesla T4", "7.5"),
    ("NVIDIA A100-SXM4-80GB", "8.0"),
    ("NVIDIA GeForce RTX 3060 Laptop GPU", "8.6"),
    ("NVIDIA RTX A6000", "8.6"),
    ("NVIDIA A10G", "8.6"),
    ("NVIDIA GeForce RTX 4090", "8.9"),
    ("NVIDIA L4", "8.9"),
    ("NVIDIA H100 80GB HBM3", "9.0"),
    ("NVIDIA B200", "10.0"),
    ("NVIDIA GeForce RTX 5070 Ti Laptop GPU", "12.0"),
    ("NVIDIA GeForce RTX 5090", "12.0"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "12.0"),
    ("Matrox G200eR2", None),
])
def test_cc_from_name(name: str, cc: str | None) -> None:
    assert compat.cc_from_name(name) == cc


# --- drivers: at and just below every CUDA minimum ----------------------------------------
MIN_DRIVER = {
    "11.0": "450.36.06", "11.1": "455.23", "11.2": "460.27.03", "11.3": "465.19.01",
    "11.4": "470.42.01", "11.5": "495.29.05", "11.6": "510.39.01", "11.7": "515.43.04",
    "11.8": "520.61.05", "12.0": "525.60.13", "12.1": "530.30.02", "12.2": "535.54.03",
    "12.3": "545.23.06", "12.4": "550.54.14", "12.5": "555.42.02", "12.6": "560.28.03",
    "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06", "13.1": "590.44.01",
    "13.2": "595.45.04",
}
COMPAT_FLOOR = {11: "450.80.02", 12: "525.60.13", 13: "580"}


def below(driver: str) -> str:
    """The version just under ``driver``: '570.26' -> '570.25'."""
    parts = list(compat.parse_driver(driver))
    i = max(i for i, p in enumerate(parts) if p > 0)
    parts[i] -= 1
    parts[i + 1:] = [999] * (len(parts) - i - 1)
    return ".".join(str(p) for p in parts)


def test_driver_table_is_complete() -> None:
    assert {c: compat.min_driver_for(c) for c in MIN_DRIVER} == MIN_DRIVER


@pytest.mark.parametrize("cuda", list(MIN_DRIVER))
def test_driver_at_the_minimum_is_full_support(cuda: str) -> None:
    assert compat.driver_supports(MIN_DRIVER[cuda], cuda) == "full"


@pytest.mark.parametrize("cuda", list(MIN_DRIVER))
def test_driver_just_below_the_minimum(cuda: str) -> None:
    drv = below(MIN_DRIVER[cuda])
    floor = COMPAT_FLOOR[compat.parse_cuda(cuda)[0]]
    want = "compat" if compat.parse_driver(drv) >= compat.parse_driver(floor) else "no"
    assert compat.driver_supports(drv, cuda) == want


@pytest.mark.parametrize("major", [11, 12, 13])
def test_minor_version_compat_floor(major: int) -> None:
    floor = COMPAT_FLOOR[major]
    newest = max((c for c in MIN_DRIVER if c.startswith(f"{major}.")), key=compat.parse_cuda)
    if compat.parse_driver(floor) < compat.parse_driver(MIN_DRIVER[newest]):
        assert compat.driver_supports(floor, newest) == "compat"
    assert compat.driver_supports(below(floor) if floor.count(".") else "579.99", newest) \
        == "no"


def test_max_cuda_for_driver() -> None:
    assert compat.max_cuda_for_driver("570.133.07") == "12.8"
    assert compat.max_cuda_for_driver("470.256.02") == "11.4"
    assert compat.max_cuda_for_driver("535.183.01") == "12.2"
    assert compat.max_cuda_for_driver("440.100") is None


def test_reported_cuda_beats_the_table() -> None:
    # nvidia-smi's header (or NVML) says what the driver supports; the table is the fallback
    assert compat.driver_supports("570.133.07", "12.8", "12.8") == "full"
    assert compat.driver_supports("580.65.06", "12.8", "13.0") == "full"
    assert compat.driver_supports("535.183.01", "12.8", "12.2") == "compat"
    assert compat.driver_supports("570.133.07", "13.0", "12.8") == "no"
    assert compat.driver_supports("470.256.02", "12.8", "11.4") == "no"
    assert compat.driver_supports("470.256.02", "11.7", "11.4") == "compat"
    assert compat.driver_supports(None, "12.8") == "unknown"


def test_driver_versions_compare_as_numbers() -> None:
    assert compat.parse_driver("570.133.07") > compat.parse_driver("570.26")
    assert compat.driver_supports("570.133.07", "12.8") == "full"


# --- wheels: with and without the needed arch ---------------------------------------------
def test_every_cuda_wheel_in_the_table_has_an_arch_list() -> None:
    ws = compat.wheels()
    assert len(ws) > 30
    missing = [f"{w.torch}+{w.variant}" for w in ws if compat.wheel_archs(w.torch, w.variant)
               is None]
    assert missing == []


def test_cpu_wheel_has_no_gpu_code() -> None:
    archs = compat.wheel_archs("2.10.0", "cpu")
    assert archs == compat.ArchList((), ())
    assert compat.kernels_run_on(archs, "8.6") == "no"


def test_arch_list_parsing() -> None:
    a = compat.parse_arch_list("7.5;8.0;12.0+PTX")
    assert a.cubins == ((7, 5), (8, 0), (12, 0)) and a.ptx == ((12, 0),)
    b = compat.parse_torch_arch_list(["sm_75", "sm_80", "sm_120", "compute_120"])
    assert b == a
    assert a.describe() == "sm_75, sm_80, sm_120, compute_120"


@pytest.mark.parametrize(("torch", "variant", "cc", "runs"), [
    ("2.10.0", "cu128", "12.0", "cubin"),  # the shipped yolo-gpu spec on RTX 50xx
    ("2.10.0", "default", "12.0", "cubin"),  # default = cu128 for 2.10
    ("2.10.0", "cu128", "12.1", "cubin"),  # same major, higher minor
    ("2.10.0", "cu128", "8.9", "cubin"),  # Ada runs the sm_86 cubin
    ("2.10.0", "cu128", "6.1", "no"),  # CUDA 12.8 builds dropped Pascal
    ("2.10.0", "cu126", "6.1", "cubin"),
    ("2.10.0", "cu126", "12.0", "no"),
    ("2.7.0", "cu118", "12.0", "no"),  # a 2.7 build without Blackwell kernels
    ("2.7.0", "cu128", "12.0", "cubin"),
    ("2.7.0", "default", "12.0", "no"),  # 2.7's PyPI wheel is cu126
    ("2.0.0", "cu117", "12.0", "no"),  # the official YOLOv5 image on an RTX 5070 Ti
    ("2.0.0", "cu117", "9.0", "no"),
    ("2.0.0", "cu118", "9.0", "cubin"),
    ("2.0.0", "cu117", "3.7", "cubin"),
    ("2.13.0", "default", "7.0", "no"),  # cu130: Volta dropped
    ("2.9.0", "cu130", "13.0", "ptx"),  # a future GPU: 12.0 PTX is JIT-compiled
    ("2.11.0", "cu130", "13.0", "no"),  # 2.11's cu130 build carries no PTX
    ("2.5.0", "cu124", "10.0", "ptx"),
    ("3.0.0", "cu128", "12.0", "unknown"),
])
def test_wheel_runs_on(torch: str, variant: str, cc: str, runs: str) -> None:
    assert compat.wheel_runs_on(torch, variant, cc) == runs


# --- verdicts -------------------------------------------------------------------------------
def test_shipped_yolo_gpu_passes_on_blackwell() -> None:
    s = load_spec("yolo-gpu", SHIPPED)
    v = compat.verdict(s, RTX5070TI)
    assert v.status == "ok", v
    assert "torch 2.10.0+cu128 has kernels for CC 12.0 (Blackwell)" in v.message
    assert v.fix == ""


def test_shipped_yolo_gpu_passes_on_h100() -> None:
    assert compat.verdict(load_spec("yolo-gpu", SHIPPED), H100).status == "ok"


def test_torch_20_cu117_on_blackwell_fails_with_a_fix() -> None:
    v = compat.verdict(gpu_spec("2.0.0", "cu117", "11.7", "yolov5"), RTX5070TI)
    assert v.status == "fail"
    assert "CC 12.0 (Blackwell) needs CUDA >= 12.8" in v.message
    assert "CUDA 11.7" in v.message
    assert v.fix == ("set torch: {version: '2.10.0', variant: cu128, packages: "
                     "['torchvision==0.25.0']} and gpu: {cuda: '12.8'} in images/yolov5.yaml")


def test_the_wheels_cuda_decides_not_the_torch_version() -> None:
    bad = compat.verdict(gpu_spec("2.7.0", "cu118", "11.8"), RTX5070TI)
    good = compat.verdict(gpu_spec("2.7.0", "cu128", "12.8"), RTX5070TI)
    assert bad.status == "fail" and "torch 2.7.0+cu118" in bad.message
    assert good.status == "ok"


def test_cpu_wheel_with_a_gpu_key_fails() -> None:
    v = compat.verdict(gpu_spec("2.10.0", "cpu", "12.8"), RTX5070TI)
    assert v.status == "fail" and "variant: cu128" in v.fix


def test_driver_too_old_for_cuda_128_runs_under_minor_version_compat() -> None:
    v = compat.verdict(load_spec("yolo-gpu", SHIPPED), RTX4090_535)
    assert v.status == "warn"
    assert "minor-version compatibility" in v.message
    assert v.fix.startswith("update the NVIDIA driver to >= 570.26 for CUDA 12.8")
    assert "variant: cu121" in v.fix  # or a wheel the driver fully supports


def test_driver_too_old_for_cuda_13_fails() -> None:
    v = compat.verdict(gpu_spec("2.11.0", "default", "13.0"), RTX4090_535)
    assert v.status == "fail"
    assert "cannot run CUDA 13.0" in v.message
    assert v.fix.startswith("update the NVIDIA driver to >= 580.65.06")


def test_pascal_on_470_with_the_shipped_spec() -> None:
    v = compat.verdict(load_spec("yolo-gpu", SHIPPED), GTX1080_470)
    assert v.status == "fail"
    assert "has no kernels for CC 6.1 (Pascal)" in v.message
    assert "cannot run CUDA 12.8" in v.message
    assert "update the NVIDIA driver to >= 560.28.03" in v.fix
    assert "torch: {version: '2.7.0', variant: cu126" in v.fix
    assert "torch: {version: '2.0.0', variant: cu117" in v.fix  # keeping the 470 driver


def test_newer_minor_than_the_cuda_targets_is_a_warning() -> None:
    b300 = G("NVIDIA B300", "10.3", "580.65.06", "13.0")
    v = compat.verdict(load_spec("yolo-gpu", SHIPPED), b300)
    assert v.status == "warn" and "binary compatible" in v.message
    assert "variant: cu130" in v.fix


def test_no_gpu() -> None:
    assert compat.verdict(load_spec("yolo-gpu", SHIPPED), None).status == "warn"
    assert compat.verdict(load_spec("yolo-cpu", SHIPPED), None).status == "ok"
    assert compat.verdict(load_spec("yolo-cpu", SHIPPED), RTX5070TI).status == "ok"
    assert compat.verdict(spec(), None).status == "ok"


def test_unknown_compute_capability_warns() -> None:
    v = compat.verdict(load_spec("yolo-gpu", SHIPPED), G("Mystery", None, "570.133.07", "12.8"))
    assert v.status == "warn" and "unknown" in v.message


def test_unknown_torch_version_warns() -> None:
    v = compat.verdict(gpu_spec("3.0.0", "default", "12.8"), RTX5070TI)
    assert v.status == "warn" and "not in labctl's wheel table" in v.message


def test_gpu_cuda_key_that_disagrees_with_the_wheel() -> None:
    v = compat.verdict(gpu_spec("2.10.0", "cu128", "11.7"), RTX5070TI)
    assert v.status == "warn" and "the wheel decides" in v.message
    assert v.fix == "set gpu: {cuda: '12.8'} in images/t.yaml"


def test_driver_fix_names_the_branch() -> None:
    assert compat.driver_fix("12.8") == ("update the NVIDIA driver to >= 570.26 for CUDA 12.8 "
                                         "(e.g. `sudo apt install nvidia-driver-570` on Ubuntu)")


def test_parsers() -> None:
    assert compat.parse_cc("sm_120") == (12, 0)
    assert compat.parse_cc("compute_86") == (8, 6)
    assert compat.parse_cc("12.1") == (12, 1)
    assert compat.variant_cuda("cu128") == "12.8"
    assert compat.variant_cuda("cu130") == "13.0"
    assert compat.variant_cuda("cpu") is None
    assert compat.cuda_variant("11.7") == "cu117"
    with pytest.raises(ValueError):
        compat.parse_cc("Blackwell")


# --- TensorFlow -----------------------------------------------------------------------------
def test_tensorflow_requirement_is_read_from_pip() -> None:
    tf = compat.tensorflow_of(spec(pip=["numpy", "tensorflow[and-cuda]==2.21.0"]))
    assert tf is not None and (tf.version, tf.cuda_libs) == ("2.21.0", True)
    cpu = compat.tensorflow_of(spec(pip=["tensorflow-cpu>=2.20"]))
    assert cpu is not None and (cpu.version, cpu.cuda_libs) == (None, False)
    assert compat.tensorflow_of(spec(pip=["tensorboard==2.21.0"])) is None


def test_tf_wheel_table_row_matches_the_measured_build() -> None:
    b = compat.tf_build("2.21.0")
    assert b is not None and (b.cuda, b.cudnn) == ("12.5.1", "9")
    assert compat.tf_archs(b).describe() == "sm_60, sm_70, sm_80, sm_89, compute_90"
    assert compat.tf_build("2.99.0") is None


def test_shipped_tf_gpu_on_blackwell_fails_with_what_works() -> None:
    v = compat.verdict(load_spec("tf-gpu", SHIPPED), RTX5070TI)
    assert v.status == "fail", v
    assert "CC 12.0 (Blackwell) needs CUDA >= 12.8" in v.message
    assert "tensorflow 2.21.0 bundles CUDA 12.5.1" in v.message
    assert "`tf` lab on the CPU" in v.fix and "KERAS_BACKEND: torch" in v.fix


def test_shipped_tf_gpu_on_hopper_jits_ptx_and_on_ada_has_kernels() -> None:
    s = load_spec("tf-gpu", SHIPPED)
    h = compat.verdict(s, H100)
    assert h.status == "warn" and "only PTX" in h.message
    old_driver = compat.verdict(s, RTX4090_535)
    assert "has kernels for CC 8.9 (Ada)" in old_driver.message
    assert old_driver.fix.startswith("update the NVIDIA driver to >= 555.42.02")
    ok = compat.verdict(s, G("NVIDIA GeForce RTX 4090", "8.9", "570.133.07", "12.8"))
    assert ok.status == "ok", ok


def test_tf_without_cuda_libs_cannot_use_the_gpu() -> None:
    v = compat.verdict(spec(pip=["tensorflow==2.21.0"], gpu={"cuda": "12.5"}), H100)
    assert v.status == "fail" and "tensorflow[and-cuda]" in v.fix


def test_shipped_tf_lab_is_a_cpu_lab() -> None:
    s = load_spec("tf", SHIPPED)
    assert compat.gpu_use(s) == "no"
    assert compat.verdict(s, RTX5070TI).status == "ok"


def test_unknown_tf_release_warns() -> None:
    v = compat.verdict(spec(pip=["tensorflow[and-cuda]==2.99.0"], gpu={"cuda": "12.8"}), H100)
    assert v.status == "warn" and "not in labctl's table" in v.message


def test_tf_gpu_on_hopper_with_driver_550_cannot_jit_its_ptx() -> None:
    v = compat.verdict(load_spec("tf-gpu", SHIPPED),
                       G("NVIDIA H100 80GB HBM3", "9.0", "550.127.05", "12.4"))
    assert v.status == "fail" and "cannot JIT the PTX" in v.message
    assert v.fix.startswith("update the NVIDIA driver to >= 555.42.02 for CUDA 12.5.1")
