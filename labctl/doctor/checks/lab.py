"""Lab checks: the lab folder, its volume folders, Jupyter's port and shared memory."""

from __future__ import annotations

import os

from labctl.doctor.checks.fs import folder_problem, user_ids
from labctl.doctor.context import Context
from labctl.doctor.registry import Finding
from labctl.runtime.ports import port_free

SHM_MIN_GB = 1.0
_GB = 1000**3


def _no_lab(ctx: Context) -> Finding:
    err = ctx.lab_error
    if err is not None and "no lab folder found" not in err.message:
        return Finding("skip", "the lab did not load (see lab.folder)")
    return Finding("skip", "not in a lab folder")


def lab_folder(ctx: Context) -> Finding:
    if ctx.lab is None:
        err = ctx.lab_error
        if ctx.lab_explicit and err is not None:
            return Finding("fail", err.message, err.fix or "")
        if err is not None and "no lab folder found" not in err.message:
            return Finding("fail", str(err).split("\n")[0], err.fix or "")
        return Finding("skip", "not in a lab folder: lab and spec checks skipped",
                       "`labctl init mylab && cd mylab`, or pass --lab DIR")
    return Finding("ok", f"{ctx.lab.root} ({len(ctx.lab.spec_names())} specs)")


def volumes(ctx: Context) -> list[Finding]:
    lab = ctx.lab
    if lab is None:
        return [_no_lab(ctx)]
    if not lab.volumes:
        return [Finding("skip", "volumes.yaml names no volumes")]
    uid, gids = user_ids()
    out = []
    for name, vol in lab.volumes.items():
        path = lab.host_path(vol)
        problems = [p for p in [folder_problem(path, uid, gids)] if p]
        if not problems and path.is_dir():
            problems += [p for sub in vol.subdirs
                         if (p := folder_problem(path / sub, uid, gids))]
        title = f"volume {name}"
        if problems:
            out.append(Finding("fail", "; ".join(p[0] for p in problems),
                               "; ".join(dict.fromkeys(p[1] for p in problems)), name, title))
        else:
            state = "writable by you" if path.exists() else "will be created by labctl, owned "\
                "by you"
            out.append(Finding("ok", f"{ctx.rel(path)}: {state}", "", name, title))
    return out


def ports(ctx: Context) -> list[Finding]:
    lab = ctx.lab
    if lab is None:
        return [_no_lab(ctx)]
    by_port: dict[int, list[str]] = {}
    for name in ctx.spec_names():
        try:
            spec = ctx.spec(name)
        except Exception:  # reported by the spec checks
            continue
        if spec.jupyter and spec.jupyter.enabled:
            by_port.setdefault(spec.jupyter.port, []).append(name)
    if not by_port:
        return [Finding("skip", "no spec runs Jupyter")]
    host = lab.settings.bind if lab.settings.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
    out = []
    for port, names in sorted(by_port.items()):
        subject, title = str(port), f"Jupyter port {port}"
        try:
            free = port_free(host, port)
        except OSError as e:
            out.append(Finding("warn", f"cannot test {host}:{port}: {e}", "", subject, title))
            continue
        if free:
            out.append(Finding("ok", f"{host}:{port} is free ({', '.join(names)})", "",
                               subject, title))
        else:
            out.append(Finding(
                "warn", f"{host}:{port} is in use (a running lab or another Jupyter?)",
                f"see who holds it: `ss -ltnp 'sport = :{port}'`; stop it, or set jupyter: "
                f"{{port: {port + 1}}} in images/{names[0]}.yaml", subject, title))
    return out


def shm_finding(total: int, free: int) -> Finding:
    msg = f"/dev/shm: {total / _GB:.1f} GB ({free / _GB:.1f} GB free)"
    if total < SHM_MIN_GB * _GB:
        return Finding("warn", msg + ": PyTorch DataLoader workers share batches through it",
                       "enlarge it: `sudo mount -o remount,size=4G /dev/shm`")
    return Finding("ok", msg)


def shm(ctx: Context) -> Finding:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return Finding("warn", "/dev/shm is missing: PyTorch DataLoader workers need it",
                       "mount it: `sudo mount -t tmpfs -o size=4G tmpfs /dev/shm`")
    return shm_finding(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
