"""doctor --image: what the image's torch, TensorFlow and TensorRT really have (their
CUDA, their compiled GPU code, whether CUDA works with the GPU attached), printed as one
JSON line after LABCTL_PROBE."""

import contextlib
import importlib.util
import json
import os
import platform
import re
import sys
import warnings

# What a CUDA torch wheel brings that the CPU wheel does not: the nvidia-* wheels, triton
# and torch's own CUDA libraries (labctl/tables/torch_wheels.yaml cuda_cost).
CUDA_LIB = re.compile(r"cuda|cudnn|cublas|cufft|curand|cusolver|cusparse|nccl|nvrtc|nvshmem"
                      r"|nvjitlink|cupti|nvtoolsext|cufile", re.I)


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def torch_disk(torch_dir):
    """Bytes of the CUDA part of the torch install, and of torch itself without it."""
    site = os.path.dirname(torch_dir)
    cuda = sum(tree_bytes(os.path.join(site, d)) for d in ("nvidia", "triton"))
    own = tree_bytes(torch_dir)
    lib = os.path.join(torch_dir, "lib")
    libs = [os.path.join(lib, f) for f in (os.listdir(lib) if os.path.isdir(lib) else [])]
    torch_cuda = sum(os.lstat(f).st_size for f in libs if CUDA_LIB.search(os.path.basename(f)))
    return {"cuda": cuda + torch_cuda, "torch": own - torch_cuda}


out = {"python": sys.version.split()[0], "libc": list(platform.libc_ver())}
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch

        out["torch"] = torch.__version__
        out["cuda"] = torch.version.cuda
        flags = getattr(torch._C, "_cuda_getArchFlags", lambda: None)()
        out["archs"] = flags.split() if flags else []
        out["available"] = bool(torch.cuda.is_available())
        out["devices"] = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                          if out["available"] else [])
        out["warnings"] = [str(w.message)[:300] for w in caught]
        out["disk"] = torch_disk(os.path.dirname(torch.__file__))
except Exception as e:
    out["error"] = (type(e).__name__ + ": " + str(e))[:500]
if importlib.util.find_spec("tensorflow") is not None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf

        info = tf.sysconfig.get_build_info()
        out["tensorflow"] = {"version": tf.__version__, "cuda": info.get("cuda_version"),
                             "archs": list(info.get("cuda_compute_capabilities") or []),
                             "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}
    except Exception as e:
        out["tensorflow"] = {"error": (type(e).__name__ + ": " + str(e))[:500]}
if importlib.util.find_spec("tensorrt") is not None:
    trt_info = {}
    try:
        import tensorrt as trt

        trt_info["version"] = trt.__version__
        if out.get("available"):  # an engine builder needs the GPU
            trt_info["builder"] = trt.Builder(trt.Logger(trt.Logger.ERROR)) is not None
    except Exception as e:
        trt_info["error"] = (type(e).__name__ + ": " + str(e))[:500]
    out["tensorrt"] = trt_info
print("LABCTL_PROBE " + json.dumps(out), flush=True)
