"""Engine checks: where the engine is, whether it answers, and what it is like."""

from __future__ import annotations

import grp
import os
import shutil
import stat
from pathlib import Path

from labctl.doctor.checks.fs import can, user_ids
from labctl.doctor.context import Context
from labctl.doctor.registry import Finding

MIN_API = (1, 40)  # device_requests (GPUs) arrived with Docker 19.03 / API 1.40
FREE_FAIL_GB = 10  # one CUDA lab image is about 8 GB
FREE_WARN_GB = 25
_GB = 1000**3
SKIP_NO_ENGINE = Finding("skip", "the engine does not answer (see engine.reachable)")


def reachable(ctx: Context) -> Finding:
    host, source = ctx.endpoint
    if ctx.engine is None:
        err = ctx.engine_error
        if err is None:
            return Finding("fail", f"no answer at {host} (from {source})")
        return Finding("fail", f"{err.message} (address from {source})", err.fix or "")
    return Finding("ok", f"answers at {host} (from {source})")


def socket_finding(path: Path, uid: int, gids: set[int], connected: bool) -> Finding:
    """Can this user talk to the engine's unix socket, and if not, why."""
    if not path.exists():
        return Finding("fail", f"no socket at {path}: the engine is not running",
                       "start it: `sudo systemctl start docker` (or `sudo dockerd &`)")
    st = path.stat()
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    desc = f"{path} (group {group}, mode {stat.S_IMODE(st.st_mode):o})"
    if can(st.st_mode, st.st_uid, st.st_gid, uid, gids, "rw") or connected:
        how = "as root" if uid == 0 else "as owner" if st.st_uid == uid else \
            f"through group {group}" if st.st_gid in gids else "as other"
        return Finding("ok", f"{desc}: you can use it {how}")
    try:
        members = grp.getgrgid(st.st_gid).gr_mem
    except KeyError:
        members = []
    user = os.environ.get("USER") or str(uid)
    if user in members:
        return Finding("fail", f"{desc}: you were added to group {group}, but this login "
                       "session does not have it yet",
                       "log out and in again (or run `newgrp docker` in this shell)")
    return Finding("fail", f"{desc}: you may not use it",
                   "sudo usermod -aG docker $USER, then log out and in again "
                   "(or use rootless Docker: `dockerd-rootless-setuptool.sh install`)")


def socket_permission(ctx: Context) -> Finding:
    host, _ = ctx.endpoint
    if not host.startswith("unix://"):
        return Finding("skip", f"{host} is not a local socket")
    uid, gids = user_ids()
    return socket_finding(Path(host.removeprefix("unix://")), uid, gids,
                          connected=ctx.engine is not None)


def _api(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def server_version(ctx: Context) -> Finding:
    if ctx.engine is None:
        return SKIP_NO_ENGINE
    v = ctx.engine.version()
    api = str(v.get("ApiVersion", "?"))
    msg = f"Docker {v.get('Version', '?')}, API {api} ({v.get('Os', '?')}/{v.get('Arch', '?')})"
    if _api(api) < MIN_API:
        return Finding("warn", msg + ": too old to give containers a GPU",
                       "upgrade Docker to 19.03 or newer (`sudo apt-get install docker.io`)")
    return Finding("ok", msg)


def rootless(ctx: Context) -> Finding:
    if ctx.engine is None:
        return SKIP_NO_ENGINE
    if ctx.engine.is_rootless():
        return Finding("ok", "rootless engine: container root is you on the host, so labctl "
                       "does not remap users")
    return Finding("ok", "rootful engine: `labctl run --user` runs as your uid:gid so files on "
                   "mounts stay yours")


_GOOD_DRIVERS = {"overlay2", "overlayfs", "fuse-overlayfs", "btrfs", "zfs", "stargz"}


def storage(ctx: Context) -> Finding:
    if ctx.engine is None:
        return SKIP_NO_ENGINE
    driver = str(ctx.engine.info().get("Driver") or "unknown")
    if driver == "vfs":
        return Finding("warn", "vfs copies every layer in full: a GPU lab takes several times "
                       "its size on disk and builds slowly",
                       'set {"storage-driver": "overlay2"} in /etc/docker/daemon.json and '
                       "restart docker (images must then be rebuilt)")
    if driver in ("aufs", "devicemapper", "overlay"):
        return Finding("warn", f"{driver} is deprecated and removed from current Docker",
                       'set {"storage-driver": "overlay2"} in /etc/docker/daemon.json and '
                       "restart docker (images must then be rebuilt)")
    status = "ok" if driver in _GOOD_DRIVERS else "warn"
    return Finding(status, driver if status == "ok" else f"{driver}: not one labctl knows")


def disk_finding(root: str, free: int, total: int) -> Finding:
    msg = f"{free / _GB:.1f} GB free of {total / _GB:.0f} GB under {root}"
    fix = ("see what uses it with `docker system df`; remove images you no longer need "
           "(`docker image rm NAME`) or move data-root in /etc/docker/daemon.json")
    if free < FREE_FAIL_GB * _GB:
        return Finding("fail", msg + f": a CUDA lab image needs about {FREE_FAIL_GB} GB", fix)
    if free < FREE_WARN_GB * _GB:
        return Finding("warn", msg + ": room for two or three lab images at most", fix)
    return Finding("ok", msg)


def disk(ctx: Context) -> Finding:
    if ctx.engine is None:
        return SKIP_NO_ENGINE
    root = str(ctx.engine.info().get("DockerRootDir") or "")
    if not ctx.is_local:
        return Finding("skip", f"the engine is not on this machine; its images live in {root}")
    try:
        usage = shutil.disk_usage(root)
    except OSError:
        return Finding("skip", f"{root} (the engine's DockerRootDir) is not visible from here "
                       "(Docker Desktop keeps it in its VM)")
    return disk_finding(root, usage.free, usage.total)
