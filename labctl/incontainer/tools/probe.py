"""doctor --image: what the image's torch really has (its CUDA, its compiled GPU code,
whether CUDA works with the GPU attached), printed as one JSON line after LABCTL_PROBE."""

import json
import platform
import sys
import warnings

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
except Exception as e:
    out["error"] = (type(e).__name__ + ": " + str(e))[:500]
print("LABCTL_PROBE " + json.dumps(out), flush=True)
