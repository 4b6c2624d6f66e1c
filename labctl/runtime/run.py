"""Start, watch and stop lab containers from a RunPlan."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from labctl import labels
from labctl.config.lab import Lab
from labctl.engine import Engine
from labctl.errors import LabError
from labctl.gpu.access import gpu_mode
from labctl.runtime import containers, remote
from labctl.runtime.plan import (
    TOKEN_IN_CONTAINER,
    RunPlan,
    bind_addresses,
    free_name,
    next_name,
    parse_remote_src,
    plan_run,
    url_host,
)
from labctl.runtime.ports import port_free
from labctl.runtime.remote import discover, split_srcs

READY_TIMEOUT = 120.0


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _token_file(lab: Lab, token: str, name: str | None = None) -> Path:
    """The token in a file of its own, in a folder only the user can enter: mounted into
    the lab (JUPYTER_TOKEN_FILE), it never appears in the container's configuration."""
    path = lab.state_dir("tokens") / (name or f"{secrets.token_hex(8)}.token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return path


def kept_token_file(lab: Lab, name: str) -> Path:
    """A token file that stays between runs (a devcontainer, a Compose service)."""
    path = lab.state_dir("tokens") / name
    return path if path.exists() else _token_file(lab, secrets.token_hex(24), name)


def _pulled(engine: Engine, lab: Lab, name: str, image: str) -> bool:
    """A lab not built here comes from the lab's registry when it holds this very spec."""
    from labctl.image.build import from_registry
    from labctl.image.render import render

    return lab.settings.registry is not None and from_registry(
        engine, lab, render(lab, lab.spec(name)), image) is not None


def make_plan(engine: Engine, lab: Lab, name: str, *, user: bool, srcs: list[str],
              command: list[str] | None, gpus: str, bind: str | None, port: int | None,
              token_file: Path | None = None, sync: bool = False) -> RunPlan:
    """The plan of `labctl run NAME`; ``token_file``: a token kept between runs (the
    devcontainer's), instead of a new one. On an engine of another machine the plan is
    that machine's (runtime.remote); ``sync`` copies the --src folders there and back."""
    spec = lab.spec(name)
    image = lab.image_tag(name)
    if engine.image(image) is None and not _pulled(engine, lab, name, image):
        raise LabError(f"the image {image} is not built yet", fix=f"labctl build {name}")
    there = discover(engine, lab)
    if sync and there is None:
        raise LabError("--sync copies folders to an engine on another machine; this engine"
                       " is on this one", fix="drop --sync: your folder is mounted as it is")
    local, elsewhere = split_srcs(srcs, sync) if there else (srcs, [])
    uid, gid = (there.uid, there.gid) if there else (os.getuid(), os.getgid())
    addresses = bind_addresses(lab.settings.bind if bind is None else bind, has_ipv6_loopback())
    runs_jupyter = bool(spec.jupyter and spec.jupyter.enabled and not command)
    token = (token_file.read_text(encoding="utf-8").strip() if token_file else
             os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24))
    plan = plan_run(
        lab, spec, image=image, user=user, uid=uid, gid=gid,
        there=[parse_remote_src(s, spec) for s in elsewhere],
        home=Path.home(), rootless=engine.is_rootless(), srcs=local, command=command,
        gpus=gpus, gpu_access=gpu_mode(engine), bind=addresses, port=port, token=token,
        token_file=(token_file or _token_file(lab, token)) if runs_jupyter else None,
        name=free_name(f"labctl-{spec.name}", lambda n: engine.container(n) is not None),
        port_free=lambda p: all(port_free(a, p) for a in addresses),
    )
    if there is not None:
        if token_file is None and plan.token_file is not None:
            plan.token_file.unlink(missing_ok=True)  # this run's token lives there only
        remote.place(plan, lab, spec, there, local)
    return plan


def create_host_dirs(paths: list[Path]) -> list[Path]:
    """Make the lab's folders as the invoking user (never by the engine as root). Existing
    folders and their contents are left exactly as they are."""
    made = []
    for p in paths:
        if not p.exists():
            p.mkdir(parents=True, exist_ok=True)
            made.append(p)
        elif not p.is_dir():
            raise LabError(f"{p} exists but is not a folder",
                           fix="move that file away, or point volumes.yaml elsewhere")
    return made


def create(engine: Engine, plan: RunPlan, *, tty: bool = False, foreground: bool) -> Any:
    """The plan's container, under the next free name if two labs start at once; a
    foreground one says which labctl will remove it (`labctl ps` tells orphans)."""
    if plan.remote is not None:
        remote.make_folders(engine, plan)
        remote.sync_in(engine, plan)
    else:
        create_host_dirs(plan.host_dirs)
    if foreground:
        plan.labels[labels.FOREGROUND] = containers.foreground_label()
    return engine.create_container(plan, tty=tty,
                                   next_name=next_name(plan.name_base or plan.name))


def wait_ready(engine: Engine, container: Any, plan: RunPlan,
               timeout: float = READY_TIMEOUT) -> None:
    """Wait until Jupyter answers on its published port, or through the plan's SSH
    forward (GET /api needs no token)."""
    assert plan.jupyter_port is not None
    where = (f"127.0.0.1:{plan.forward_port}" if plan.forward_port is not None else
             f"{url_host(plan.bind[0])}:{plan.ports[plan.jupyter_port]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            logs = container.logs(tail=15).decode(errors="replace").splitlines()
            raise LabError(f"the lab {plan.name} stopped while starting", details=logs,
                           fix=f"see `labctl logs {plan.name}`; `labctl doctor {plan.spec}`")
        try:
            if requests.get(f"http://{where}/api", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise LabError(f"Jupyter in {plan.name} did not answer within {timeout:.0f}s",
                   fix=f"see `labctl logs {plan.name}`")


def run(engine: Engine, plan: RunPlan, *, detach: bool, keep: bool,
        say: Callable[[str], None], on_ready: Callable[[RunPlan], None] = lambda p: None
        ) -> int:
    """Start the lab. Foreground: stream its output until it ends or Ctrl-C, then remove
    it; the command's exit code is returned. Detached: return once it is ready."""
    interactive = not detach and plan.jupyter_port is None and sys.stdin.isatty()
    container = create(engine, plan, tty=interactive, foreground=not detach)
    try:
        with ExitStack() as stack:
            if interactive:
                return engine.attach_cli(container)
            engine.start(container)
            if plan.jupyter_port is not None:
                _announce(engine, container, plan, stack, detach, say)
            on_ready(plan)
            if detach:
                say(f"running in the background as {plan.name}; stop it with "
                    f"`labctl stop {plan.name}`")
                return 0
            for chunk in container.logs(stream=True, follow=True):
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            return int(container.wait().get("StatusCode", 1))
    except KeyboardInterrupt:
        say(f"stopping {plan.name}")
        engine.stop_container(container, timeout=5)
        return 130
    except BaseException:
        if detach:  # a lab that failed to start is not left behind
            engine.remove_container(container)
        raise
    finally:
        if not detach and not keep:
            engine.remove_container(container)
            forget_token(plan)
        if not detach:  # a kept container keeps its volumes (`labctl stop` copies back)
            remote.sync_back(engine, plan.image, plan.syncs, say, plan.copies, drop=not keep)


def _announce(engine: Engine, container: Any, plan: RunPlan, stack: ExitStack,
              detach: bool, say: Callable[[str], None]) -> None:
    """Wait for Jupyter and say its URLs; on an ssh:// engine through a port forward
    labctl holds while it runs (a detached lab gets the command that makes one)."""
    assert plan.jupyter_port is not None
    port = plan.ports[plan.jupyter_port]
    ssh = plan.remote.ssh if plan.remote is not None else None
    say(f"waiting for Jupyter in {plan.name} ...")
    if ssh is not None:
        plan.forward_port = stack.enter_context(
            remote.forward(ssh, port, url_host(plan.bind[0])))
    wait_ready(engine, container, plan)
    if ssh is not None:
        if detach:
            say(f"JupyterLab is ready on {ssh.host}; reach it with `ssh -N -L"
                f" {plan.forward_port}:127.0.0.1:{port} {' '.join(ssh.args())}`, then:")
        else:
            say(f"JupyterLab is ready on {ssh.host}, here through ssh -L"
                f" {plan.forward_port}:127.0.0.1:{port}:")
        say(f"  {plan.url}")
    else:
        say(f"JupyterLab is ready: {plan.url}")
    if plan.tensorboard_url:
        say(f"TensorBoard (logs in $TENSORBOARD_LOGDIR): {plan.tensorboard_url}")


def forget_token(plan: RunPlan) -> None:
    if plan.token_file is not None:
        plan.token_file.unlink(missing_ok=True)


def token_of(container: Any) -> str | None:
    """The Jupyter token of one of your labs, read from its token file (never printed for
    a lab that is not yours: that file is in its owner's lab folder, 0700)."""
    for m in container.attrs.get("Mounts") or []:
        if m.get("Destination") == TOKEN_IN_CONTAINER:
            try:
                return Path(m["Source"]).read_text(encoding="utf-8").strip()
            except OSError:
                return None
    return None
