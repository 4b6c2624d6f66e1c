"""RunPlan: everything about starting a lab container, decided without an engine.

Pure: the caller passes in the facts (host uid/gid, rootless or not, GPU runtime,
which names and ports are taken), so every case is unit-tested without Docker.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labctl import __version__, validators
from labctl.engine import LABEL_LAB, LABEL_PREFIX, LABEL_SPEC
from labctl.errors import LabError
from labctl.lab import Lab
from labctl.render import command as default_command
from labctl.spec import ImageSpec

LABEL_RUN = f"{LABEL_PREFIX}run"
LABEL_URL = f"{LABEL_PREFIX}url"
WORKSPACE = "/workspace"
DEFAULT_WORK = "work"  # lab-relative source folder when neither --src nor the spec names one
SHM_SIZE = "2g"  # PyTorch DataLoader workers pass batches through /dev/shm (64 MB default)


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


@dataclass
class RunPlan:
    spec: str
    image: str
    name: str
    command: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    host_dirs: list[Path]  # created (as the invoking user) before the container starts
    ports: dict[int, tuple[str, int]]  # container port -> (host ip, host port)
    workdir: str
    labels: dict[str, str]
    gpus: bool
    user_mode: str  # "host" (remapped to the host uid/gid) | "root" | "image"
    notes: list[str] = field(default_factory=list)  # said with --verbose
    warnings: list[str] = field(default_factory=list)  # always said
    jupyter_port: int | None = None  # container port of Jupyter, if it runs
    token: str | None = None
    shm_size: str = SHM_SIZE
    network: str | None = None  # None: the engine's default bridge; "none" for offline checks

    @property
    def url(self) -> str | None:
        if self.jupyter_port is None:
            return None
        ip, port = self.ports[self.jupyter_port]
        return f"http://{url_host(ip)}:{port}/lab?token={self.token}"


def url_host(ip: str) -> str:
    """How to reach a published address from this machine, as a URL host."""
    if ip in ("0.0.0.0", "127.0.0.1", ""):
        return "127.0.0.1"
    if ip == "::":
        return "[::1]"
    return f"[{ip}]" if ":" in ip else ip


def parse_src(value: str, lab: Lab) -> tuple[Path, str]:
    """'PATH[:DEST]' -> (absolute host path, container path); DEST defaults under /workspace."""
    path, sep, dest = value.partition(":")
    host = Path(os.path.expanduser(path))
    host = (host if host.is_absolute() else Path.cwd() / host).resolve()
    if not sep:
        dest = f"{WORKSPACE}/{host.name}"
    try:
        validators.mount_target(dest)
    except ValueError as e:
        raise LabError(f"--src {value}: {e}", fix=f"e.g. --src {path}:{WORKSPACE}/{host.name}"
                       ) from None
    if not host.is_dir():
        raise LabError(f"--src {value}: {host} is not a folder",
                       fix="create it, or name an existing folder")
    return host, dest


def free_name(base: str, taken: Callable[[str], bool]) -> str:
    name, n = base, 1
    while taken(name):
        n += 1
        name = f"{base}-{n}"
    return name


def free_port(start: int, is_free: Callable[[int], bool], tries: int = 50) -> int:
    for port in range(start, min(start + tries, 65536)):
        if is_free(port):
            return port
    raise LabError(f"no free port in {start}..{start + tries - 1}",
                   fix="stop other labs (`labctl stop --all`) or pass --port N")


def plan_run(
    lab: Lab,
    spec: ImageSpec,
    *,
    image: str,
    user: bool,
    uid: int,
    gid: int,
    rootless: bool,
    srcs: list[str],
    command: list[str] | None,
    gpus: str,  # auto | all | none
    gpu_runtime: bool,
    bind: str,
    port: int | None,
    token: str,
    name_taken: Callable[[str], bool],
    port_free: Callable[[int], bool],
) -> RunPlan:
    notes: list[str] = []
    warnings: list[str] = []
    env: dict[str, str] = {}
    # --- who runs -------------------------------------------------------------------
    if not user:
        user_mode = "image"
    elif rootless:
        user_mode = "root"
        env["LABCTL_UID"] = "0"
        notes.append("rootless Docker: container root already is your user; no uid remap")
    elif uid == 0:
        user_mode = "root"
        env["LABCTL_UID"] = "0"
        notes.append("you are root: the lab runs as root")
    else:
        user_mode = "host"
        env["LABCTL_UID"], env["LABCTL_GID"] = str(uid), str(gid)
        notes.append(f"the lab user is remapped to your uid:gid {uid}:{gid}")
    # --- volumes --------------------------------------------------------------------
    mounts: list[Mount] = []
    host_dirs: list[Path] = []
    for vol_name in spec.volumes:
        vol = lab.volumes[vol_name]
        host = lab.host_path(vol)
        host_dirs.append(host)
        host_dirs += [host / sub for sub in vol.subdirs]
        mounts.append(Mount(host, vol.container))
        env.update(vol.env)
    # --- sources --------------------------------------------------------------------
    sources = [parse_src(s, lab) for s in srcs]
    if not sources:
        defaults = list(spec.src) or [DEFAULT_WORK]
        for s in defaults:
            host = lab.resolve_path(s)
            host_dirs.append(host)
            sources.append((host, f"{WORKSPACE}/{host.name}"))
    for host, dest in sources:
        mounts.append(Mount(host, dest))
        for vol_name, sub in spec.src_volumes.items():
            if vol_name not in lab.volumes:
                raise LabError(f"src_volumes: volume '{vol_name}' is not in volumes.yaml",
                               file=str(spec.source), fix="name a volume from volumes.yaml")
            inside = host / sub
            if inside.exists() and (not inside.is_dir() or any(inside.iterdir())):
                notes.append(f"{inside} already holds files: not covering it with '{vol_name}'")
                continue
            host_dirs.append(inside)  # the empty mount point, made by you, not by the engine
            mounts.append(Mount(lab.host_path(lab.volumes[vol_name]), f"{dest}/{sub}"))
    workdir = sources[0][1] if sources else spec.workdir
    # --- Jupyter and ports ------------------------------------------------------------
    jupyter_port = spec.jupyter.port if spec.jupyter and spec.jupyter.enabled else None
    cmd = list(command) if command else default_command(spec)
    runs_jupyter = jupyter_port is not None and not command
    ports: dict[int, tuple[str, int]] = {}
    taken_ports: set[int] = set()

    def pick(start: int) -> int:
        p = free_port(start, lambda x: x not in taken_ports and port_free(x))
        taken_ports.add(p)
        return p

    if runs_jupyter:
        assert jupyter_port is not None
        env["JUPYTER_TOKEN"] = token
        ports[jupyter_port] = (bind, port if port else pick(jupyter_port))
    for p in spec.ports:
        if p not in ports:
            ports[p] = (bind, pick(p))
    if ports and bind not in ("127.0.0.1", "::1"):
        warnings.append(f"ports are published on {bind}: anyone who can reach this machine "
                        "can try the token (bind: 127.0.0.1 keeps the lab to this machine)")
    # --- GPUs -----------------------------------------------------------------------
    want_gpu = gpus == "all" or (gpus == "auto" and spec.gpu is not None)
    if want_gpu and not gpu_runtime:
        if gpus == "all" or (spec.gpu and spec.gpu.required):
            raise LabError(
                f"'{spec.name}' asks for GPUs but the Docker engine has no GPU runtime "
                "(no 'nvidia' runtime, no CDI specs)",
                fix="install the NVIDIA Container Toolkit and run `sudo nvidia-ctk runtime "
                "configure --runtime=docker && sudo systemctl restart docker` (see `labctl "
                "doctor`), or run on the CPU with --gpus none",
            )
        warnings.append("the engine has no GPU runtime: running on the CPU (see `labctl "
                        "doctor`; --gpus none silences this)")
        want_gpu = False
    name = free_name(f"labctl-{spec.name}", name_taken)
    labels = {
        LABEL_RUN: __version__,
        LABEL_SPEC: spec.name,
        LABEL_LAB: str(lab.root),
    }
    plan = RunPlan(
        spec=spec.name, image=image, name=name, command=cmd, env=env, mounts=mounts,
        host_dirs=host_dirs, ports=ports, workdir=workdir, labels=labels, gpus=want_gpu,
        user_mode=user_mode, notes=notes, warnings=warnings,
        jupyter_port=jupyter_port if runs_jupyter else None,
        token=token if runs_jupyter else None,
    )
    if plan.url:
        plan.labels[LABEL_URL] = plan.url
    return plan
