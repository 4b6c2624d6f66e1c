"""RunPlan: everything about starting a lab container, decided without an engine.

Pure: the caller passes in the facts (host uid/gid, rootless or not, how the engine gives
a container the GPU, which ports are free), so every case is unit-tested without Docker.
The same plan feeds `labctl run`, `labctl check` and the exports, so they cannot drift.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from labctl import __version__, labels
from labctl.config import validators
from labctl.config.lab import Lab, host_folder_problem
from labctl.config.spec import ImageSpec
from labctl.errors import LabError
from labctl.gpu.compat import gpu_use
from labctl.image.layers import command as default_command
from labctl.runtime.mounts import BookMounts, Mount, book_mounts

DEFAULT_WORK = "work"  # lab-relative source folder when neither --src nor the spec names one
SHM_SIZE = "2g"  # PyTorch DataLoader workers pass batches through /dev/shm (64 MB default)
LAB_UID = 1000  # the image's lab user (templates/_system.j2)
TOKEN_IN_CONTAINER = "/run/labctl/jupyter-token"  # the token file, mounted read-only
LOOPBACK = ("127.0.0.1", "::1")


@dataclass
class RunPlan:
    spec: str
    image: str
    name: str
    command: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    host_dirs: list[Path]  # created (as the invoking user) before the container starts
    ports: dict[int, int]  # container port -> host port
    bind: tuple[str, ...]  # the host addresses ports are published on
    workdir: str
    labels: dict[str, str]
    gpus: str  # "" (none) | "runtime" | "cdi": how the engine gives the container the GPU
    user_mode: str  # "host" (remapped to the host uid/gid) | "root" | "image"
    notes: list[str] = field(default_factory=list)  # said with --verbose
    warnings: list[str] = field(default_factory=list)  # always said
    jupyter_port: int | None = None  # container port of Jupyter, if it runs
    token: str | None = None
    token_file: Path | None = None  # on the host, 0600, mounted at TOKEN_IN_CONTAINER
    shm_size: str = SHM_SIZE
    network: str | None = None  # None: the engine's default bridge; "none" for offline checks
    name_base: str = ""  # names tried when two labs start at once: base, base-2, ...
    tensorboard: bool = False  # TensorBoard is served through Jupyter
    # An engine on another machine (runtime.remote.Remote), and the local folders --sync
    # copies into volumes there and back: (folder, volume); copies go in only.
    remote: Any = None
    syncs: list[tuple[Path, str]] = field(default_factory=list)
    copies: list[tuple[Path, str]] = field(default_factory=list)  # copied in, not back
    forward_port: int | None = None  # this machine's end of an ssh -L to Jupyter's port
    # The empty folders in the learner's --src folders on which shared folders are mounted
    # (runtime.mounts); also in host_dirs: made as the learner, never by the engine as root.
    src_dirs: list[Path] = field(default_factory=list)

    def publish(self) -> dict[int, list[tuple[str, int]]]:
        """Container port -> every (host address, host port) it is published on."""
        return {c: [(ip, h) for ip in self.bind] for c, h in self.ports.items()}

    @property
    def base_url(self) -> str | None:
        """Jupyter's address without the token (what labels and other users see)."""
        if self.jupyter_port is None:
            return None
        if self.forward_port is not None:
            return f"http://127.0.0.1:{self.forward_port}/lab"
        return f"http://{url_host(self.bind[0])}:{self.ports[self.jupyter_port]}/lab"

    @property
    def url(self) -> str | None:
        base = self.base_url
        return f"{base}?token={self.token}" if base and self.token else base

    @property
    def tensorboard_url(self) -> str | None:
        """TensorBoard through Jupyter (jupyter-server-proxy), behind the same token."""
        if not self.tensorboard or self.base_url is None:
            return None
        base = self.base_url.removesuffix("/lab") + "/tensorboard/"
        return f"{base}?token={self.token}" if self.token else base

    @property
    def gpu_mode(self) -> str:
        return self.gpus or "cpu"


def url_host(ip: str) -> str:
    """How to reach a published address from this machine, as a URL host."""
    if ip in ("0.0.0.0", "127.0.0.1", ""):
        return "127.0.0.1"
    if ip == "::":
        return "[::1]"
    return f"[{ip}]" if ":" in ip else ip


def bind_addresses(bind: str, has_ipv6_loopback: bool) -> tuple[str, ...]:
    """The literal addresses to publish on: 'localhost' is the loopback (both families
    where the host has ::1). A name Docker would have to resolve, or an empty one,
    publishes on every interface, so only literal IP addresses get this far."""
    try:
        value = validators.bind_address(bind)
    except ValueError as e:
        raise LabError(f"--bind {bind!r}: {e}", id="run.bad-bind",
                       fix="--bind 127.0.0.1 (or bind: in labctl.yaml)"
                       ) from None
    if value == "localhost":
        return LOOPBACK if has_ipv6_loopback else LOOPBACK[:1]
    return (value,)


def _home_dot_folder(real: Path, home: Path) -> bool:
    try:
        rel = real.relative_to(home)
    except ValueError:
        return False
    return rel == Path(".") or rel.parts[0].startswith(".")


def parse_src(value: str, spec: ImageSpec, home: Path) -> tuple[Path, str, str | None]:
    """'PATH[:DEST]' -> (host folder, container path, warning or None). DEST defaults to
    the spec's workdir/NAME. System folders are refused; a home's dot-folders (and the home
    itself) are mounted read-write only with a loud warning."""
    path, sep, dest = value.partition(":")
    host = Path(os.path.expanduser(path))
    host = (host if host.is_absolute() else Path.cwd() / host).resolve()
    if not sep:
        dest = f"{spec.workdir}/{host.name}"
    if (problem := host_folder_problem(host)) is not None:
        raise LabError(f"--src {value}: {problem}; labctl does not mount it into a lab",
                       id="run.src-system-folder",
                       fix="mount a folder of your own, e.g. --src ~/d2l-zh")
    try:
        dest = validators.mount_target(dest)
    except ValueError as e:
        raise LabError(f"--src {value}: {e}", id="run.bad-src-target",
                       fix=f"e.g. --src {path}:{spec.workdir}/{host.name}") from None
    if not host.is_dir():
        raise LabError(f"--src {value}: {host} is not a folder", id="run.src-not-folder",
                       fix="create it, or name an existing folder")
    if not os.access(host, os.W_OK | os.X_OK):  # the engine (root) could mount it anyway
        raise LabError(f"--src {value}: you may not write to {host}", id="run.src-not-writable",
                       fix="mount a folder of your own; a lab writes to its sources as you")
    warning = None
    if _home_dot_folder(host, home.resolve()):
        what = "your whole home folder" if host == home.resolve() else f"{host}, a hidden folder"
        warning = (f"--src {value} mounts {what} read-write into the lab: code in the lab can"
                   " read and change it (keys, tokens, settings)")
    return host, dest, warning


def parse_remote_src(value: str, spec: ImageSpec) -> Mount:
    """'PATH[:DEST]' of a folder on the engine's machine (``--src remote:PATH``): nothing
    here can check it exists; its path is validated as a host folder."""
    path, sep, dest = value.partition(":")
    try:
        path = validators.host_folder(path)
        dest = validators.mount_target(dest if sep else
                                       f"{spec.workdir}/{PurePosixPath(path).name}")
    except ValueError as e:
        raise LabError(f"--src remote:{value}: {e}", id="run.bad-remote-src",
                       fix="e.g. --src remote:/home/you/d2l-zh") from None
    return Mount(Path(path), dest)


def free_name(base: str, taken: Callable[[str], bool]) -> str:
    name, n = base, 1
    while taken(name):
        n += 1
        name = f"{base}-{n}"
    return name


def next_name(base: str) -> Callable[[str], str]:
    """The name to try after a taken one: base, base-2, base-3 ..."""

    def after(current: str) -> str:
        n = int(current[len(base) + 1:]) if current != base else 1
        return f"{base}-{n + 1}"

    return after


def free_port(start: int, is_free: Callable[[int], bool], tries: int = 50) -> int:
    for port in range(start, min(start + tries, 65536)):
        if is_free(port):
            return port
    raise LabError(f"no free port in {start}..{start + tries - 1}", id="run.no-free-port",
                   fix="stop other labs (`labctl stop --all`) or pass --port N")


def _check_targets(mounts: list[Mount], spec: ImageSpec) -> None:
    """No two mounts at one place, and none above the workspace (it would hide it)."""
    seen: dict[str, Path] = {}
    for m in mounts:
        if m.target in seen and seen[m.target] != m.source:
            raise LabError(f"two folders would be mounted at {m.target}: {seen[m.target]} and"
                           f" {m.source}", id="run.mount-clash",
                           fix="give one of them another DEST (--src PATH:DEST)")
        seen[m.target] = m.source
        if validators.is_within(spec.workdir, m.target) and spec.workdir != m.target:
            raise LabError(f"{m.source} would be mounted at {m.target}, above the lab's"
                           f" workspace {spec.workdir}", id="run.mount-above-workspace",
                           fix=f"mount it under {spec.workdir} or elsewhere, e.g. /data")


@dataclass(frozen=True)
class RunRequest:
    """What the learner asked of `labctl run` (or a command asks for them): no host fact."""

    user: bool = False  # --user: the lab runs as the learner's uid/gid
    srcs: tuple[str, ...] = ()  # --src PATH[:DEST], as typed (make_plan takes remote: out)
    command: tuple[str, ...] = ()  # empty: the spec's own (JupyterLab when it has one)
    gpus: str = "auto"  # auto | all | none
    bind: str | None = None  # the host address to publish on; None: the lab's setting
    port: int | None = None  # Jupyter's host port; None: the next free one
    taken_ports: frozenset[int] = frozenset()  # host ports other labs of one file will use
    token: str | None = None  # Jupyter's token; None: a new random one
    token_file: Path | None = None  # the token's file on the host, mounted read-only
    sync: bool = False  # --sync: copy the --src folders to the engine's machine and back
    there: tuple[str, ...] = ()  # --src remote:PATH[:DEST]: folders of the engine's machine
    compat: bool = True  # False (--no-compat): the spec's book shims off
    verbose: bool = False  # --verbose: the lab's entrypoint says more too


@dataclass(frozen=True)
class HostFacts:
    """What the plan needs to know of the host and its engine (make_plan asks them)."""

    uid: int  # the learner's (on the engine's machine, for an engine of another one)
    gid: int
    home: Path
    rootless: bool  # rootless Docker: container root already is the learner
    gpu_access: str  # how the engine gives a container the GPU: runtime | cdi | none
    has_ipv6_loopback: bool  # 'localhost' publishes on ::1 too
    port_free: Callable[[str, int], bool]  # (host address, port): nothing listens there
    name_taken: Callable[[str], bool]  # a container of that name exists


@dataclass
class _Draft:
    """What the sections of plan_run add up, in the order they add it."""

    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    host_dirs: list[Path] = field(default_factory=list)  # made as the learner, in order
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan_run(lab: Lab, spec: ImageSpec, request: RunRequest, host: HostFacts) -> RunPlan:
    """How to run ``spec`` as ``request`` asks, on ``host``: decided without an engine."""
    bind = bind_addresses(lab.settings.bind if request.bind is None else request.bind,
                          host.has_ipv6_loopback)
    d = _Draft()
    user_mode = _who_runs(d, request.user, host)
    _volumes(d, lab, spec)
    workdir, src_dirs = _sources(d, lab, spec, request, host.home)
    runs_jupyter = bool(spec.jupyter and spec.jupyter.enabled and not request.command)
    token = request.token if request.token is not None else secrets.token_hex(24)
    if runs_jupyter and request.token_file is not None:
        d.env["JUPYTER_TOKEN_FILE"] = TOKEN_IN_CONTAINER
        d.mounts.append(Mount(request.token_file, TOKEN_IN_CONTAINER, read_only=True))
    elif runs_jupyter:
        d.env["JUPYTER_TOKEN"] = token
    jupyter_port = spec.jupyter.port if runs_jupyter and spec.jupyter else None
    ports = _ports(d, spec, jupyter_port, request, bind, host.port_free)
    gpus = _gpus(d, spec, request.gpus, host.gpu_access)
    if not request.compat:
        d.env["LABCTL_COMPAT"] = "off"
    if request.verbose:
        d.env["LABCTL_VERBOSE"] = "1"
    plan = RunPlan(
        spec=spec.name, image=lab.image_tag(spec.name),
        name=free_name(f"labctl-{spec.name}", host.name_taken),
        command=list(request.command) if request.command else default_command(spec),
        env=d.env, mounts=d.mounts, host_dirs=d.host_dirs, ports=ports, bind=bind,
        workdir=workdir, gpus=gpus, user_mode=user_mode, notes=d.notes, warnings=d.warnings,
        labels={labels.RUN: __version__, labels.SPEC: spec.name, labels.LAB: str(lab.root),
                labels.OWNER: str(host.uid)},
        jupyter_port=jupyter_port, token=token if runs_jupyter else None,
        token_file=request.token_file if runs_jupyter else None,
        name_base=f"labctl-{spec.name}", src_dirs=src_dirs,
        tensorboard=runs_jupyter and bool(spec.jupyter and spec.jupyter.tensorboard),
    )
    if plan.base_url:
        plan.labels[labels.URL] = plan.base_url
    return plan


def _who_runs(d: _Draft, user: bool, host: HostFacts) -> str:
    """The lab's user mode: the image's user, root, or remapped to the host's uid/gid."""
    if not user:
        return "image"
    if host.rootless:
        d.env["LABCTL_UID"] = "0"
        d.notes.append("rootless Docker: container root already is your user; no uid remap")
        return "root"
    if host.uid == 0:
        d.env["LABCTL_UID"] = "0"
        d.notes.append("you are root: the lab runs as root")
        return "root"
    d.env["LABCTL_UID"], d.env["LABCTL_GID"] = str(host.uid), str(host.gid)
    d.notes.append(f"the lab user is remapped to your uid:gid {host.uid}:{host.gid}")
    return "host"


def _volumes(d: _Draft, lab: Lab, spec: ImageSpec) -> None:
    """The spec's volumes (folders of the lab, and their subfolders) and their env."""
    for vol_name in spec.volumes:
        vol = lab.volumes[vol_name]
        host = lab.host_path(vol)
        d.host_dirs.append(host)
        d.host_dirs += [host / sub for sub in vol.subdirs]
        d.mounts.append(Mount(host, vol.container))
        d.env.update(vol.env)
    # Hugging Face: the lab's mirror; offline (the shared cache only) when the shell says so.
    if lab.settings.network.hf_endpoint:
        d.env["HF_ENDPOINT"] = lab.settings.network.hf_endpoint
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        d.env["HF_HUB_OFFLINE"] = "1"


def _sources(d: _Draft, lab: Lab, spec: ImageSpec, request: RunRequest, home: Path
             ) -> tuple[str, list[Path]]:
    """Mount the --src folders (or the spec's src, or work/) with the lab's shared folders
    inside them (runtime.mounts), then the engine machine's: (workdir, src_dirs)."""
    there = [parse_remote_src(s, spec) for s in request.there]
    sources: list[tuple[Path, str]] = []
    for s in request.srcs:
        folder, dest, warning = parse_src(s, spec, home)
        sources.append((folder, dest))
        if warning:
            d.warnings.append(warning)
    if not sources and not there:
        for s in list(spec.src) or [DEFAULT_WORK]:
            folder = lab.inside(lab.root / s, f"src {s!r}") if spec.src else lab.root / s
            if not folder.exists():  # a folder labctl makes for the lab: the shared ones in it
                d.host_dirs += [folder, *(folder / sub for sub in spec.src_volumes.values())]
            sources.append((folder, f"{spec.workdir}/{folder.name}"))
    shared = {sub: lab.host_path(lab.volumes[vol]) for vol, sub in spec.src_volumes.items()}
    volume_folders = {lab.host_path(v) for v in lab.volumes.values()}  # never searched
    workdirs: list[str] = []
    src_dirs: list[Path] = []
    for folder, dest in sources:
        book = (book_mounts(folder, dest, shared, volume_folders) if shared else
                BookMounts([Mount(folder, dest)], dest))
        d.mounts += book.mounts
        d.warnings += book.warnings
        src_dirs += [x for x in book.make if x not in src_dirs]
        workdirs.append(book.workdir)
    d.host_dirs += [x for x in src_dirs if x not in d.host_dirs]
    for m in there:
        d.mounts.append(m)
        workdirs.append(m.target)
    _check_targets(d.mounts, spec)
    return (workdirs[0] if workdirs else spec.workdir), src_dirs


def _ports(d: _Draft, spec: ImageSpec, jupyter_port: int | None, request: RunRequest,
           bind: tuple[str, ...], port_free: Callable[[str, int], bool]) -> dict[int, int]:
    """Container port -> host port: Jupyter's (the request's, or the next free one), then
    the spec's, each free on every address of ``bind`` and not one of ``taken_ports``."""
    ports: dict[int, int] = {}
    taken: set[int] = set(request.taken_ports)
    port = request.port

    def pick(start: int) -> int:
        p = free_port(start, lambda x: x not in taken and all(port_free(a, x) for a in bind))
        taken.add(p)
        return p

    if jupyter_port is not None:
        ports[jupyter_port] = port if port else pick(jupyter_port)
    for p in spec.ports:
        if p not in ports:
            ports[p] = pick(p)
    exposed = [b for b in bind if b not in LOOPBACK]
    if ports and exposed:
        d.warnings.append(f"ports are published on {', '.join(exposed)}: anyone who can reach"
                          " this machine can try the token (bind: 127.0.0.1 keeps the lab to"
                          " this machine)")
    return ports


def _gpus(d: _Draft, spec: ImageSpec, gpus: str, gpu_access: str) -> str:
    """How the container gets the GPU ("" for none): ``gpus`` (auto | all | none) as the
    spec uses one and the engine gives one (``gpu_access``: runtime | cdi | none)."""
    use = gpu_use(spec)
    want_gpu = gpus == "all" or (gpus == "auto" and use != "no")
    if want_gpu and gpu_access == "none":
        if gpus == "all" or use == "required":
            raise LabError(
                f"'{spec.name}' asks for GPUs but the Docker engine has no GPU runtime "
                "(no 'nvidia' runtime, no NVIDIA CDI spec)", id="run.no-gpu-runtime",
                fix="install the NVIDIA Container Toolkit and run `sudo nvidia-ctk runtime "
                "configure --runtime=docker && sudo systemctl restart docker` (see `labctl "
                "doctor`), or run on the CPU with --gpus none",
            )
        (d.notes if use == "optional" else d.warnings).append(
            "the engine has no GPU runtime: running on the CPU (see `labctl doctor`; --gpus"
            " none silences this)")
        want_gpu = False
    return gpu_access if want_gpu else ""
