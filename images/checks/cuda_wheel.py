"""The PyTorch wheel is a CUDA 12.8 build with Blackwell (sm_120) kernels; with a GPU
attached, a kernel runs on it."""

import torch

print("torch", torch.__version__, "cuda", torch.version.cuda)
assert torch.version.cuda == "12.8", torch.version.cuda
arch = torch._C._cuda_getArchFlags()  # compiled archs; needs no GPU
print("compiled archs:", arch)
assert "sm_120" in arch.split(), arch
if torch.cuda.is_available():
    x = torch.ones(1024, device="cuda")
    assert float((x * 2).sum()) == 2048.0
    print("GPU:", torch.cuda.get_device_name(0))
else:
    print("no GPU attached: the CPU workload stands in")
