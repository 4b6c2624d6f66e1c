"""The GPU, CUDA driver, torch and TensorFlow wheel, and TensorRT tables (tables/*.yaml,
each with its sources), read once through one typed model each. compat.py, tensorrt.py and
torch_wheels.py ask these, never the YAML files."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from labctl import tables

# YAML reads 12.0 as a number; the tables mean the text.
Text = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, (int, float)) else v)]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arch(_Row):
    """One GPU architecture (gpu_arch.yaml): the first CUDA that compiles for its compute
    capability and the last one that still does (None: every current CUDA)."""

    cc: Text
    arch: str
    gpus: str
    first_cuda: Text
    last_cuda: Text | None = None


class NameRule(_Row):
    """A GPU name pattern and its compute capability (for drivers that cannot report it)."""

    match: str
    cc: Text


class GpuArchTable(_Row):
    architectures: list[Arch]
    names: list[NameRule]


class CudaDriverTable(_Row):
    min_driver: dict[str, Text]  # CUDA "12.8" -> the driver that fully supports it
    minor_version_compat: dict[str, Text]  # CUDA major -> the floor under compatibility
    ptx_jit_under_compat: bool = False


class TorchRelease(_Row):
    torch: Text  # major.minor
    torchvision: Text
    pypi_default: str  # the variant PyPI's Linux wheel bundles (cu128)
    variants: tuple[str, ...]


class ArchList(_Row):
    """TORCH_CUDA_ARCH_LIST of the wheels of some torch minors for one CUDA variant."""

    torch: list[Text]
    variant: str
    arch_list: str = Field(alias="list")


class CudaCost(_Row):
    """What a CUDA wheel's libraries take on disk, installed, beside torch's own files."""

    torch: Text  # major.minor
    variant: str
    cuda_bytes: int  # the nvidia-* wheels, triton, torch's CUDA libraries
    torch_bytes: int  # the rest of torch: about what the CPU wheel installs
    measured: str


class TorchWheelTable(_Row):
    index_template: str
    releases: list[TorchRelease]
    archs: list[ArchList] = Field(default_factory=list)
    cuda_cost: list[CudaCost] = Field(default_factory=list)


class TfBuild(_Row):
    """One TensorFlow wheel as it describes itself (tf.sysconfig.get_build_info())."""

    tensorflow: Text  # major.minor
    cuda: Text
    cudnn: Text
    archs: str  # cuda_compute_capabilities: "sm_60,sm_70,...,compute_90"
    source: str


class TrtRelease(_Row):
    """One TensorRT minor as its cu12 pip packages ship it (tensorrt.yaml)."""

    tensorrt: Text  # major.minor
    pip: str  # the exact version the packages are pinned to
    ccs: str  # a name of TensorRtTable.cc_sets
    python: tuple[Text, Text]  # the first and last CPython with wheels
    glibc: Text  # the manylinux floor of its wheels
    min_driver: Text | None = None  # stated by the release; else CUDA 12's compat floor


class TensorRtTable(_Row):
    index_url: str
    packages: tuple[str, ...]
    cuda_major: Text
    default: Text
    cc_sets: dict[str, tuple[Text, ...]]
    releases: list[TrtRelease]


class TfWheelTable(_Row):
    builds: list[TfBuild]
    no_kernels_fix: list[str]  # what to do where no TensorFlow wheel has kernels for a GPU


def gpu_arch() -> GpuArchTable:
    return tables.load("gpu_arch.yaml", GpuArchTable)


def cuda_drivers() -> CudaDriverTable:
    return tables.load("cuda_drivers.yaml", CudaDriverTable)


def torch_wheels() -> TorchWheelTable:
    return tables.load("torch_wheels.yaml", TorchWheelTable)


def tf_wheels() -> TfWheelTable:
    return tables.load("tf_wheels.yaml", TfWheelTable)


def tensorrt() -> TensorRtTable:
    return tables.load("tensorrt.yaml", TensorRtTable)
