"""RunPlan: everything about starting a lab container, decided without an engine.

Pure: the caller passes in the facts (host uid/gid, rootless or not, how the engine gives
a container the GPU, which ports are free), so every case is unit-tested without Docker.
The same plan feeds `labctl run`, `labctl check` and the exports, so they cannot drift.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
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

DEFAULT_WORK = "work"  # lab-relative source folder when neither --src nor the spec names one
SHM_SIZE = "2g"  # PyTorch DataLoader workers pass batches through /dev/shm (64 MB default)
LAB_UID = 1000  # the image's lab user (templates/_system.j2)
TOKEN_IN_CONTAINER = "/run/labctl/jupyter-token"  # the token file, mounted read-only
LOOPBACK = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Mount:
    source: Path  # a host folder; with volume, the name of a named volume
    target: str
    read_only: bool = False
    volume: bool = False


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
        raise LabError(f"--bind {bind!r}: {e}", fix="--bind 127.0.0.1 (or bind: in labctl.yaml)"
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
                       fix="mount a folder of your own, e.g. --src ~/d2l-zh")
    try:
        dest = validators.mount_target(dest)
    except ValueError as e:
        raise LabError(f"--src {value}: {e}",
                       fix=f"e.g. --src {path}:{spec.workdir}/{host.name}") from None
    if not host.is_dir():
        raise LabError(f"--src {value}: {host} is not a folder",
                       fix="create it, or name an existing folder")
    if not os.access(host, os.W_OK | os.X_OK):  # the engine (root) could mount it anyway
        raise LabError(f"--src {value}: you may not write to {host}",
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
        raise LabError(f"--src remote:{value}: {e}",
                       fix="e.g. --src remote:/home/you/d2l-zh") from None
    return Mount(Path(path), dest)


CHAPTERS = "chapter_*"  # how the books (d2l-zh, the d2l notebooks) name chapter folders
MAX_ENTRIES = 300  # a folder with more entries than this is mounted whole, not entry by entry


@dataclass
class BookMounts:
    mounts: list[Mount]
    workdir: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _book_root(folder: Path) -> bool:
    """A folder of the book's chapter folders (whose `../data` the book reads)."""
    try:
        return any(c.is_dir() and fnmatch.fnmatch(c.name, CHAPTERS) for c in folder.iterdir())
    except OSError:
        return False


def book_mounts(host: Path, dest: str, shared: dict[str, Path]) -> BookMounts:
    """The mounts for one source folder such that every chapter's `../SUB` is the lab's
    shared folder for SUB (d2l: `../data` is the lab's data/), wherever in a book the
    learner points --src: the book's root, its `pytorch/` notebooks, or one chapter.

    No folder is made in the learner's tree: the level that holds the chapters is mounted
    entry by entry under a folder of the container, and the shared folder beside them. A
    SUB folder the book already has with files in it is kept (the book then uses its own),
    and the warning says how to share it."""
    out = BookMounts([], dest)
    if fnmatch.fnmatch(host.name, CHAPTERS) and host.parent != host:  # one chapter
        parent = posixpath.join(posixpath.dirname(dest), host.parent.name)
        out.mounts.append(Mount(host, posixpath.join(parent, host.name)))
        out.workdir = posixpath.join(parent, host.name)
        _shared_beside(host.parent, parent, shared, out, chapter_only=True)
        return out
    roots = [d for d in (host, *_subfolders(host)) if _book_root(d)]
    if not roots:  # not a book: the folder itself, the shared folder over an empty SUB
        out.mounts.append(Mount(host, dest))
        for sub, source in shared.items():
            inside = host / sub
            if inside.is_dir() and not any(inside.iterdir()):
                out.mounts.append(Mount(source, f"{dest}/{sub}"))
        return out
    _expand(host, dest, set(roots), shared, out)
    out.notes.append(f"{host} is mounted entry by entry so that its chapters' ../"
                     f"{'|'.join(shared)} is the lab's; new files go into its folders")
    return out


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(c for c in folder.iterdir() if c.is_dir() and not c.name.startswith("."))
    except OSError:
        return []


def _expand(host: Path, dest: str, roots: set[Path], shared: dict[str, Path],
            out: BookMounts) -> None:
    """Mount ``host`` entry by entry at ``dest``, recursing into the book roots below it."""
    entries = sorted(host.iterdir())
    if len(entries) > MAX_ENTRIES:
        out.mounts.append(Mount(host, dest))
        out.warnings.append(f"{host} has {len(entries)} entries: mounted whole, so its"
                            f" chapters' ../{'|'.join(shared)} is not the lab's")
        return
    for entry in entries:
        if entry in roots and entry != host:
            _expand(entry, f"{dest}/{entry.name}", roots, shared, out)
        elif not (host in roots and entry.name in shared):
            out.mounts.append(Mount(entry, f"{dest}/{entry.name}"))
    if host in roots:
        _shared_beside(host, dest, shared, out)


def _shared_beside(book: Path, dest: str, shared: dict[str, Path], out: BookMounts,
                   chapter_only: bool = False) -> None:
    for sub, source in shared.items():
        own = book / sub
        if own.is_dir() and any(own.iterdir()):
            out.warnings.append(
                f"{own} already holds files: the book uses it, not the lab's shared {sub}/"
                f" folder; to share them, move them there (mv {own}/* {source}/) and remove"
                f" the empty folder")
            if not chapter_only:
                out.mounts.append(Mount(own, f"{dest}/{sub}"))
            continue
        out.mounts.append(Mount(source, f"{dest}/{sub}"))


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
    raise LabError(f"no free port in {start}..{start + tries - 1}",
                   fix="stop other labs (`labctl stop --all`) or pass --port N")


def _check_targets(mounts: list[Mount], spec: ImageSpec) -> None:
    """No two mounts at one place, and none above the workspace (it would hide it)."""
    seen: dict[str, Path] = {}
    for m in mounts:
        if m.target in seen and seen[m.target] != m.source:
            raise LabError(f"two folders would be mounted at {m.target}: {seen[m.target]} and"
                           f" {m.source}", fix="give one of them another DEST (--src PATH:DEST)")
        seen[m.target] = m.source
        if validators.is_within(spec.workdir, m.target) and spec.workdir != m.target:
            raise LabError(f"{m.source} would be mounted at {m.target}, above the lab's"
                           f" workspace {spec.workdir}",
                           fix=f"mount it under {spec.workdir} or elsewhere, e.g. /data")


def plan_run(
    lab: Lab,
    spec: ImageSpec,
    *,
    image: str,
    user: bool,
    uid: int,
    gid: int,
    home: Path,
    rootless: bool,
    srcs: list[str],
    command: list[str] | None,
    gpus: str,  # auto | all | none
    gpu_access: str,  # how the engine gives containers the GPU: runtime | cdi | none
    bind: tuple[str, ...],
    port: int | None,
    token: str,
    token_file: Path | None,
    name: str,
    port_free: Callable[[int], bool],
    there: list[Mount] | None = None,  # --src remote:...: folders of the engine's machine
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
    sources: list[tuple[Path, str]] = []
    for s in srcs:
        host, dest, warning = parse_src(s, spec, home)
        sources.append((host, dest))
        if warning:
            warnings.append(warning)
    if not sources and not there:
        for s in list(spec.src) or [DEFAULT_WORK]:
            host = lab.inside(lab.root / s, f"src {s!r}") if spec.src else lab.root / s
            if not host.exists():  # a folder labctl makes for the lab: the shared ones in it
                host_dirs += [host, *(host / sub for sub in spec.src_volumes.values())]
            sources.append((host, f"{spec.workdir}/{host.name}"))
    shared = {sub: lab.host_path(lab.volumes[vol]) for vol, sub in spec.src_volumes.items()}
    workdirs = []
    for host, dest in sources:
        book = book_mounts(host, dest, shared) if shared else BookMounts([Mount(host, dest)],
                                                                          dest)
        mounts += book.mounts
        warnings += book.warnings
        notes += book.notes
        workdirs.append(book.workdir)
    for m in there or []:
        mounts.append(m)
        workdirs.append(m.target)
    _check_targets(mounts, spec)
    workdir = workdirs[0] if workdirs else spec.workdir
    # --- Jupyter and ports ------------------------------------------------------------
    jupyter_port = spec.jupyter.port if spec.jupyter and spec.jupyter.enabled else None
    cmd = list(command) if command else default_command(spec)
    runs_jupyter = jupyter_port is not None and not command
    ports: dict[int, int] = {}
    taken_ports: set[int] = set()

    def pick(start: int) -> int:
        p = free_port(start, lambda x: x not in taken_ports and port_free(x))
        taken_ports.add(p)
        return p

    if runs_jupyter:
        assert jupyter_port is not None
        if token_file is not None:
            env["JUPYTER_TOKEN_FILE"] = TOKEN_IN_CONTAINER
            mounts.append(Mount(token_file, TOKEN_IN_CONTAINER, read_only=True))
        else:
            env["JUPYTER_TOKEN"] = token
        ports[jupyter_port] = port if port else pick(jupyter_port)
    for p in spec.ports:
        if p not in ports:
            ports[p] = pick(p)
    exposed = [b for b in bind if b not in LOOPBACK]
    if ports and exposed:
        warnings.append(f"ports are published on {', '.join(exposed)}: anyone who can reach"
                        " this machine can try the token (bind: 127.0.0.1 keeps the lab to"
                        " this machine)")
    # --- GPUs -----------------------------------------------------------------------
    use = gpu_use(spec)
    want_gpu = gpus == "all" or (gpus == "auto" and use != "no")
    if want_gpu and gpu_access == "none":
        if gpus == "all" or use == "required":
            raise LabError(
                f"'{spec.name}' asks for GPUs but the Docker engine has no GPU runtime "
                "(no 'nvidia' runtime, no NVIDIA CDI spec)",
                fix="install the NVIDIA Container Toolkit and run `sudo nvidia-ctk runtime "
                "configure --runtime=docker && sudo systemctl restart docker` (see `labctl "
                "doctor`), or run on the CPU with --gpus none",
            )
        (notes if use == "optional" else warnings).append(
            "the engine has no GPU runtime: running on the CPU (see `labctl doctor`; --gpus"
            " none silences this)")
        want_gpu = False
    plan_labels = {
        labels.RUN: __version__,
        labels.SPEC: spec.name,
        labels.LAB: str(lab.root),
        labels.OWNER: str(uid),
    }
    plan = RunPlan(
        spec=spec.name, image=image, name=name, command=cmd, env=env, mounts=mounts,
        host_dirs=host_dirs, ports=ports, bind=bind, workdir=workdir, labels=plan_labels,
        gpus=gpu_access if want_gpu else "", user_mode=user_mode, notes=notes,
        warnings=warnings, jupyter_port=jupyter_port if runs_jupyter else None,
        token=token if runs_jupyter else None,
        token_file=token_file if runs_jupyter else None, name_base=f"labctl-{spec.name}",
        tensorboard=runs_jupyter and bool(spec.jupyter and spec.jupyter.tensorboard),
    )
    if plan.base_url:
        plan.labels[labels.URL] = plan.base_url
    return plan
