"""The doctor's checks, in the order they are shown: one module per area, each check a
small function from the doctor's Context to findings, with its own advice text."""

from labctl.doctor.checks import containers, engine, gpu, image, lab, space, spec
from labctl.doctor.registry import Check

CHECKS: tuple[Check, ...] = (
    Check("engine.reachable", "engine", "engine answers", engine.reachable),
    Check("engine.socket", "engine", "socket permission", engine.socket_permission),
    Check("engine.version", "engine", "server version", engine.server_version),
    Check("engine.rootless", "engine", "rootless mode", engine.rootless),
    Check("engine.storage", "engine", "storage driver", engine.storage),
    Check("engine.disk", "engine", "free disk for images", engine.disk),
    Check("gpu.driver", "gpu", "NVIDIA driver", gpu.driver),
    Check("gpu.device", "gpu", "GPU", gpu.devices),
    Check("containers.gpu", "gpu-in-containers", "GPU access for containers",
          containers.containers_gpu),
    Check("lab.folder", "lab", "lab folder", lab.lab_folder),
    Check("lab.volumes", "lab", "volume folder", lab.volumes),
    Check("lab.port", "lab", "Jupyter port", lab.ports),
    Check("lab.shm", "lab", "shared memory", lab.shm),
    Check("spec.gpu", "spec", "spec on this machine", spec.spec_gpu),
    Check("spec.engine-gpu", "spec", "GPU reaches the container", spec.spec_engine_gpu),
    Check("spec.cuda-cost", "spec", "CUDA libraries without a GPU", spec.spec_cuda_cost),
    Check("spec.tensorrt", "spec", "TensorRT on this GPU", spec.spec_tensorrt),
    Check("spec.disk", "spec", "room to build", space.build_room),
    Check("image.probe", "image", "inside the image", image.image_probe,
          when=lambda ctx: ctx.image),
)
