"""Find this machine's NVIDIA GPUs: NVML when it loads, else `nvidia-smi`, else none.

Why both: NVML (nvidia-ml-py) is fast and exact but needs libnvidia-ml from the driver;
nvidia-smi is what every driver install has, but 470-branch drivers cannot report
compute_cap, so the name table in gpu_arch.yaml fills it in. No GPU, no driver or a
broken driver is a result (Probe with no GPUs and a note), never an exception.
Parsing is kept apart from running the command so recorded outputs can be tested.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from labctl.gpu import compat

QUERY = "name,compute_cap,driver_version,memory.total"
QUERY_NO_CC = "name,driver_version,memory.total"
NO_NVML_ENV = "LABCTL_NO_NVML"
NVML_LIB = "libnvidia-ml.so.1"  # the name pynvml loads on Linux
TIMEOUT = 15


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    cc: str | None  # compute capability "12.0"; None when nothing could tell
    driver: str | None
    memory_mib: int | None
    cuda_max: str | None  # the highest CUDA the driver supports (nvidia-smi header / NVML)
    cc_source: str = "nvidia-smi"  # nvml | nvidia-smi | name table | unknown


@dataclass(frozen=True)
class Probe:
    gpus: tuple[Gpu, ...] = ()
    source: str = "none"  # nvml | nvidia-smi | none
    driver: str | None = None
    cuda_max: str | None = None
    problem: str | None = None  # a driver that is installed but does not answer
    notes: tuple[str, ...] = field(default=())


# --- parsing (pure) --------------------------------------------------------------------
def rejects_compute_cap(text: str) -> bool:
    """470-branch nvidia-smi: 'Field "compute_cap" is not a valid field to query.'"""
    return "compute_cap" in text and "not a valid field" in text


def driver_failed(text: str) -> bool:
    """nvidia-smi is installed but the kernel driver does not answer."""
    low = text.lower()
    return "nvidia-smi has failed" in low or "couldn't communicate with the nvidia driver" in low


def no_devices(text: str) -> bool:
    return "no devices were found" in text.lower()


def parse_header(text: str) -> tuple[str | None, str | None]:
    """(driver version, highest CUDA) from the plain `nvidia-smi` table header."""
    driver = re.search(r"Driver Version:\s*([0-9][0-9.]*)", text)
    cuda = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", text)
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def parse_memory(value: str) -> int | None:
    """'12227 MiB' -> 12227; '[N/A]' -> None."""
    m = re.match(r"\s*(\d+)\s*MiB", value)
    return int(m.group(1)) if m else None


def parse_query(text: str, with_cc: bool = True, cuda_max: str | None = None) -> list[Gpu]:
    """GPUs from `--query-gpu=QUERY --format=csv,noheader` (or QUERY_NO_CC)."""
    gpus: list[Gpu] = []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for index, row in enumerate(csv.reader(lines, skipinitialspace=True)):
        if with_cc and len(row) >= 4:
            name, cc, driver, mem = (c.strip() for c in row[:4])
        elif not with_cc and len(row) >= 3:
            name, driver, mem = (c.strip() for c in row[:3])
            cc = ""
        else:
            continue
        source = "nvidia-smi"
        if not re.fullmatch(r"\d+\.\d+", cc):
            cc = compat.cc_from_name(name) or ""
            source = "name table" if cc else "unknown"
        gpus.append(Gpu(index, name, cc or None, driver or None, parse_memory(mem), cuda_max,
                        source))
    return gpus


def cuda_from_nvml(version: int) -> str:
    """nvmlSystemGetCudaDriverVersion_v2: 1000*major + 10*minor -> 'major.minor'."""
    return f"{version // 1000}.{(version % 1000) // 10}"


# --- running ---------------------------------------------------------------------------
Runner = Callable[[list[str]], tuple[int, str]]


def _run(cmd: list[str]) -> tuple[int, str]:
    """(exit status, stdout + stderr); nvidia-smi prints its errors on stdout."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def probe_smi(exe: str = "nvidia-smi", run: Runner = _run) -> Probe:
    """The nvidia-smi path: query, fall back without compute_cap, read the header."""
    # which() skips PATH entries this user cannot enter (exec would raise EACCES there).
    exe = shutil.which(exe) or exe
    try:
        rc, out = run([exe, f"--query-gpu={QUERY}", "--format=csv,noheader"])
    except (FileNotFoundError, PermissionError):
        return Probe(notes=("nvidia-smi is not installed (no NVIDIA driver)",))
    except subprocess.TimeoutExpired:
        return Probe(problem=f"nvidia-smi did not answer within {TIMEOUT} s")
    with_cc = True
    notes: list[str] = []
    if rc != 0 and rejects_compute_cap(out):
        with_cc = False
        notes.append("this nvidia-smi cannot report compute_cap (470-branch driver); "
                     "the compute capability comes from labctl's GPU name table")
        try:
            rc, out = run([exe, f"--query-gpu={QUERY_NO_CC}", "--format=csv,noheader"])
        except subprocess.TimeoutExpired:
            return Probe(problem=f"nvidia-smi did not answer within {TIMEOUT} s")
    if rc != 0 or driver_failed(out):
        if no_devices(out):
            return Probe(source="nvidia-smi", notes=("the NVIDIA driver sees no GPU",))
        first = next((ln.strip() for ln in out.splitlines() if ln.strip()), f"exit status {rc}")
        return Probe(source="nvidia-smi", problem=first)
    try:
        _, header = run([exe])
    except subprocess.TimeoutExpired:
        header = ""
    driver, cuda_max = parse_header(header)
    gpus = parse_query(out, with_cc, cuda_max)
    if driver is None and gpus:
        driver = gpus[0].driver
    return Probe(tuple(gpus), "nvidia-smi", driver, cuda_max, None, tuple(notes))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def probe_nvml() -> Probe | None:
    """The NVML path; None when the library or the driver is not there."""
    try:  # a quick dlopen first: importing pynvml costs ~0.1 s, too much for no GPU
        ctypes.CDLL(NVML_LIB)
    except OSError:
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            cuda_max: str | None = cuda_from_nvml(pynvml.nvmlSystemGetCudaDriverVersion_v2())
        except pynvml.NVMLError:
            cuda_max = None
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = _text(pynvml.nvmlDeviceGetName(h))
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                cc: str | None = f"{major}.{minor}"
                source = "nvml"
            except pynvml.NVMLError:
                cc = compat.cc_from_name(name)
                source = "name table" if cc else "unknown"
            try:
                mem: int | None = int(pynvml.nvmlDeviceGetMemoryInfo(h).total) // (1 << 20)
            except pynvml.NVMLError:
                mem = None
            gpus.append(Gpu(i, name, cc, driver, mem, cuda_max, source))
        return Probe(tuple(gpus), "nvml", driver, cuda_max)
    except pynvml.NVMLError as e:
        return Probe(source="nvml", problem=f"NVML: {e}")
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def probe(environ: Mapping[str, str] | None = None) -> Probe:
    """NVML unless LABCTL_NO_NVML is set (tests use it to force the nvidia-smi path)."""
    env = os.environ if environ is None else environ
    if not env.get(NO_NVML_ENV):
        found = probe_nvml()
        if found is not None:
            return found
    return probe_smi()
