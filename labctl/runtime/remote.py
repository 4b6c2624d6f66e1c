"""A lab on the engine of another machine (DOCKER_HOST=ssh://user@gpu-box, a docker
context). Bind sources are paths on that machine: labctl makes the lab's folders there with
a throw-away container as the learner's uid there, never assumes a local path exists there,
mounts a local folder only by copying it in and back (--sync), and reaches Jupyter through
an SSH port forward it starts itself."""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from labctl import labels
from labctl.config.lab import Lab
from labctl.config.spec import ImageSpec
from labctl.engine import Engine, endpoint
from labctl.errors import LabError
from labctl.runtime.plan import LAB_UID, Mount, RunPlan, parse_src

SSH_TIMEOUT = 30


@dataclass(frozen=True)
class Ssh:
    """How the system ssh client reaches the engine's machine (docker-py's ssh:// form)."""

    host: str
    user: str | None = None
    port: int | None = None

    def args(self) -> list[str]:
        """ssh's options and destination, as docker-py's ssh client passes them."""
        return [*(["-l", self.user] if self.user else []),
                *(["-p", str(self.port)] if self.port else []), "--", self.host]


@dataclass(frozen=True)
class Remote:
    address: str  # the engine, as said to the learner
    ssh: Ssh | None
    uid: int  # the learner there: the owner of what labctl makes there
    gid: int
    home: PurePosixPath
    root: PurePosixPath  # this lab folder there


def ssh_of(address: str) -> Ssh | None:
    u = urlsplit(address)
    return Ssh(u.hostname or "", u.username, u.port) if u.scheme == "ssh" else None


def discover(engine: Engine, lab: Lab) -> Remote | None:
    """None for an engine on this machine; else who the learner is there, and where this
    lab's folders go there (``remote_root:``, default ~/labctl/<folder name>)."""
    if engine.is_local():
        return None
    address = endpoint()[0]
    ssh = ssh_of(address)
    if ssh is None:  # tcp://: no shell there to ask; the folder must be named
        if lab.settings.remote_root is None:
            raise LabError(
                f"the engine {address} is on another machine and labctl cannot ask it where"
                " your folders are", id="remote.no-remote-root",
                fix="set remote_root: /home/YOU/labs/NAME in"
                f" {lab.root / 'labctl.yaml'} (a folder of yours on that machine), or reach"
                " it as DOCKER_HOST=ssh://you@host")
        uid, gid, home = os.getuid(), os.getgid(), PurePosixPath(lab.settings.remote_root)
    else:
        uid, gid, home = _whoami(ssh)
    root = PurePosixPath(lab.settings.remote_root or home / "labctl" / lab.root.name)
    return Remote(address, ssh, uid, gid, home, root)


def login_uid() -> int:
    """The uid of the ssh login to the engine's machine (this user's for a tcp:// one)."""
    ssh = ssh_of(endpoint()[0])
    return _whoami(ssh)[0] if ssh else os.getuid()


@functools.cache  # one ssh round trip per command
def _whoami(ssh: Ssh) -> tuple[int, int, PurePosixPath]:
    cmd = ["ssh", "-o", "BatchMode=yes", *ssh.args(), 'id -u; id -g; printf "%s\\n" "$HOME"']
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=SSH_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"ssh to {ssh.host} failed: {e}", id="remote.ssh-failed",
                       fix=f"check `ssh {' '.join(ssh.args())} true` works") from None
    lines = out.stdout.split("\n")
    if out.returncode != 0 or len(lines) < 3 or not lines[0].isdigit():
        raise LabError(f"ssh to {ssh.host} could not tell who you are there",
                       id="remote.ssh-whoami-failed",
                       details=out.stderr.strip().splitlines()[-3:],
                       fix=f"check `ssh {' '.join(ssh.args())} id` works (a key, no password)")
    return int(lines[0]), int(lines[1]), PurePosixPath(lines[2])


def rebase(path: Path, lab_root: Path, local_home: Path, remote: Remote) -> Path:
    """A folder of the lab's (its volumes, its default work folder) on the other machine:
    the lab folder's become the remote lab folder's, the home's the remote home's."""
    for here, there in ((lab_root, remote.root), (local_home, remote.home)):
        try:
            return Path(there / path.relative_to(here))
        except ValueError:
            continue
    return path


def split_srcs(srcs: list[str], sync: bool) -> tuple[list[str], list[str]]:
    """(local folders to copy in, folders of the other machine). A plain local folder is
    refused: it does not exist there."""
    local, there = [], []
    for s in srcs:
        if s.startswith("remote:"):
            there.append(s.removeprefix("remote:"))
        elif sync:
            local.append(s)
        else:
            raise LabError(
                f"--src {s}: the engine is on another machine, where this folder of yours"
                " does not exist", id="remote.local-src",
                fix=f"name a folder there (--src remote:/path/there), or"
                f" add --sync to copy {s} in and back when the lab stops")
    return local, there


def make_folders(engine: Engine, plan: RunPlan) -> None:
    """The plan's folders on the other machine, and its token file (0600), made there as
    the learner by a throw-away container from the lab's own image (on a rootless engine
    its root is the learner)."""
    there = plan.remote
    owner = (0, 0) if engine.is_rootless() else (there.uid, there.gid)
    dirs = [str(d) for d in plan.host_dirs]
    archive = None
    if plan.token_file is not None and plan.token:
        dirs.append(str(plan.token_file.parent))
        archive = tar_of({str(plan.token_file): plan.token.encode()}, *owner)
    engine.make_host_folders(plan.image, dirs, archive, f"{owner[0]}:{owner[1]}")


# --- --sync: a local folder copied into a volume and back -------------------------------
def pack(folder: Path, uid: int, gid: int) -> Iterator[bytes]:
    """The folder as a tar whose files belong to ``uid``:``gid`` in the volume."""
    with tempfile.TemporaryFile() as buf:
        with tarfile.open(fileobj=buf, mode="w") as tar:
            def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
                info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
                return info
            tar.add(folder, arcname=".", filter=owned)
        buf.seek(0)
        while chunk := buf.read(1 << 20):
            yield chunk


def unpack(chunks: Iterator[bytes], folder: Path) -> int:
    """The volume's files back into the local folder: changed and new files written as the
    learner, nothing of the folder deleted. Returns how many files came back."""
    n = 0
    with tempfile.TemporaryFile() as buf:
        for c in chunks:
            buf.write(c)
        buf.seek(0)
        with tarfile.open(fileobj=buf, mode="r") as tar:
            for m in tar:
                parts = PurePosixPath(m.name).parts[1:]  # the archive's top folder
                if not parts or ".." in parts or not (m.isfile() or m.isdir()):
                    continue  # links and devices stay there (as tarfile's "data" filter)
                target = folder.joinpath(*parts)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                if target.is_symlink():  # never write through a link of the folder
                    target.unlink()
                with src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
                target.chmod(m.mode & 0o755 | 0o600)
                n += 1
    return n


# --- Jupyter through ssh -L ---------------------------------------------------------------
def _local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def forward(ssh: Ssh, remote_port: int, remote_host: str = "127.0.0.1"
            ) -> Iterator[int]:
    """``ssh -N -L`` from a free port on this machine's loopback to the lab's port there;
    yields the local port, and ends the forward on leaving."""
    if shutil.which("ssh") is None:
        raise LabError("no ssh client on this machine",
                       id="remote.no-ssh-client", fix="sudo apt install openssh-client")
    port = _local_port()
    proc = subprocess.Popen(
        ["ssh", "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
         "-L", f"127.0.0.1:{port}:{remote_host}:{remote_port}", *ssh.args()],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + SSH_TIMEOUT
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise LabError(f"the SSH port forward to {ssh.host} did not start",
                               id="remote.forward-failed",
                               details=err.strip().splitlines()[-3:],
                               fix="check `ssh -L` is allowed there (AllowTcpForwarding)")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        try:
            return s.connect_ex(("127.0.0.1", port)) == 0
        except OSError:
            return False


def tar_of(files: dict[str, bytes], uid: int, gid: int) -> bytes:
    """Files (absolute path -> content) as a tar for the engine, 0600 and owned by uid."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(data), 0o600, uid, gid
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- the plan, for the engine's machine ----------------------------------------------------
def place(plan: RunPlan, lab: Lab, spec: ImageSpec, remote: Remote, synced: list[str]
          ) -> None:
    """Rewrite ``plan`` (made with the remote uid/gid) for the engine's machine: the lab's
    folders and its token file become the remote lab folder's, each --sync folder a named
    volume at the folder's place in the container (mounts inside it give way to it)."""
    home = Path.home()
    plan.remote = remote
    roots = []
    for s in synced:
        host, dest, _ = parse_src(s, spec, home)
        roots.append((host, dest, f"labctl-sync-{secrets.token_hex(6)}"))

    def inside_synced(p: Path) -> bool:
        return any(p == r or r in p.parents for r, _, _ in roots)

    if plan.token_file is not None:  # the token file is made there (make_folders)
        plan.token_file = rebase(plan.token_file, lab.root, home, remote)
    plan.mounts = [replace(m, source=rebase(m.source, lab.root, home, remote))
                   for m in plan.mounts if not inside_synced(m.source)]
    plan.mounts += [Mount(Path(vol), dest, volume=True) for _, dest, vol in roots]
    plan.host_dirs = [rebase(d, lab.root, home, remote) for d in plan.host_dirs
                      if not inside_synced(d)]
    plan.syncs = [(host, vol) for host, _, vol in roots]
    if plan.syncs:  # `labctl stop` of a detached lab copies them back
        plan.labels[labels.SYNC] = json.dumps([[str(h), v] for h, v in plan.syncs])
    plan.notes.append(f"the engine is {remote.address}: the lab's folders are in"
                      f" {remote.root} there")


def lab_uid(plan: RunPlan) -> tuple[int, int]:
    """Who the lab's files in a --sync volume must belong to: the lab user's uid:gid."""
    uid = int(plan.env.get("LABCTL_UID", LAB_UID))
    return uid, int(plan.env.get("LABCTL_GID", uid))


def copy_in(plan: RunPlan, folder: Path, dest: str) -> None:
    """A local folder the lab only reads (a check's scripts), copied into a volume there."""
    vol = f"labctl-copy-{secrets.token_hex(6)}"
    plan.mounts.append(Mount(Path(vol), dest, read_only=True, volume=True))
    plan.copies.append((folder, vol))


def sync_in(engine: Engine, plan: RunPlan) -> None:
    uid, gid = lab_uid(plan)
    for folder, vol in plan.syncs + plan.copies:
        engine.fill_volume(plan.image, vol, pack(folder, uid, gid), f"{uid}:{gid}",
                           {labels.SYNC: str(folder)})


def sync_back(engine: Engine, image: str, syncs: list[tuple[Path, str]],
              say: Callable[[str], None], copies: list[tuple[Path, str]] | None = None,
              drop: bool = True) -> None:
    """Each --sync volume's files back into its local folder; the volume goes (``drop``)
    only once that worked, so a failed copy loses nothing. ``copies``' volumes just go."""
    for folder, vol in syncs:
        n = unpack(engine.volume_tar(image, vol), folder)
        say(f"copied {n} files back into {folder}")
        if drop:
            engine.remove_volume(vol)
    for _, vol in (copies or []) if drop else []:
        engine.remove_volume(vol)


def syncs_of(container: Any) -> list[tuple[Path, str]]:
    raw = (container.labels or {}).get(labels.SYNC)
    return [(Path(h), v) for h, v in json.loads(raw)] if raw else []

