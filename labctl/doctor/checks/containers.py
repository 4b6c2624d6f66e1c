"""GPU in containers: can the engine hand the GPU to a container (NVIDIA runtime or CDI)?"""

from __future__ import annotations

import shutil

from labctl.doctor.context import Context
from labctl.doctor.registry import Finding
from labctl.gpu.access import DEFAULT_CDI_DIRS, nvidia_cdi_specs

RUNTIME_FIX = ("sudo nvidia-ctk runtime configure --runtime=docker && "
               "sudo systemctl restart docker")
CDI_FIX = "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
TOOLKIT_FIX = ("install the NVIDIA Container Toolkit (package nvidia-container-toolkit from "
               "NVIDIA's apt repository), then ")


def container_gpu_finding(runtimes: list[str], cdi_dirs: list[str], cdi_specs: list[str],
                          unread_specs: list[str], toolkit: bool, rootless: bool) -> Finding:
    """Pure: what the engine offers for GPUs, what is missing and the command that adds it."""
    if runtimes:
        msg = f"NVIDIA runtime registered with the engine ({', '.join(runtimes)})"
        if cdi_specs:
            msg += f"; CDI specs: {', '.join(cdi_specs)}"
        if rootless:
            msg += ("; rootless Docker also needs no-cgroups = true in "
                    "/etc/nvidia-container-runtime/config.toml")
        return Finding("ok", msg)
    if cdi_specs:
        return Finding("ok", f"CDI specs for NVIDIA GPUs: {', '.join(cdi_specs)}")
    prefix = "" if toolkit else TOOLKIT_FIX
    if cdi_dirs:
        return Finding("fail", "no NVIDIA runtime, and no NVIDIA CDI spec in "
                       f"{', '.join(cdi_dirs)}: containers cannot use the GPU",
                       f"{prefix}{CDI_FIX} (or `{RUNTIME_FIX}`)")
    unread = (f"; CDI specs exist ({', '.join(unread_specs)}) but this engine does not read "
              "them (Docker 25+ with CDI enabled does)") if unread_specs else ""
    return Finding("fail", "the engine has no NVIDIA runtime (docker info: Runtimes) and no "
                   f"CDI spec dirs{unread}: containers cannot use the GPU",
                   f"{prefix}{RUNTIME_FIX}")


def containers_gpu(ctx: Context) -> Finding:
    if not ctx.probe.gpus:
        return Finding("skip", "no NVIDIA GPU on this machine")
    if ctx.engine is None:
        return Finding("skip", "the engine does not answer (see engine.reachable)")
    e = ctx.engine
    dirs = e.cdi_spec_dirs()
    specs = nvidia_cdi_specs(dirs) if ctx.is_local else []
    unread = [] if dirs or not ctx.is_local else nvidia_cdi_specs(DEFAULT_CDI_DIRS)
    toolkit = bool(shutil.which("nvidia-ctk") or shutil.which("nvidia-container-cli"))
    return container_gpu_finding(e.gpu_runtimes(), dirs, specs, unread, toolkit,
                                 e.is_rootless())
