"""Start, watch and stop lab containers from a RunPlan."""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from labctl.engine import Engine
from labctl.errors import LabError
from labctl.lab import Lab
from labctl.ports import port_free
from labctl.runplan import LABEL_RUN, LABEL_SPEC, RunPlan, plan_run, url_host

READY_TIMEOUT = 120.0


def make_plan(engine: Engine, lab: Lab, name: str, *, user: bool, srcs: list[str],
              command: list[str] | None, gpus: str, bind: str | None, port: int | None
              ) -> RunPlan:
    spec = lab.spec(name)
    image = lab.image_tag(name)
    if engine.image(image) is None:
        raise LabError(f"the image {image} is not built yet", fix=f"labctl build {name}")
    bind = bind or lab.settings.bind
    return plan_run(
        lab, spec, image=image, user=user, uid=os.getuid(), gid=os.getgid(),
        rootless=engine.is_rootless(), srcs=srcs, command=command, gpus=gpus,
        gpu_runtime=bool(engine.gpu_runtimes() or engine.cdi_spec_dirs()), bind=bind,
        port=port, token=os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24),
        name_taken=lambda n: engine.container(n) is not None,
        port_free=lambda p: port_free(bind, p),
    )


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


def wait_ready(engine: Engine, container: Any, plan: RunPlan,
               timeout: float = READY_TIMEOUT) -> None:
    """Wait until Jupyter answers on its published port (GET /api needs no token)."""
    assert plan.jupyter_port is not None
    ip, port = plan.ports[plan.jupyter_port]
    host = url_host(ip)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            logs = container.logs(tail=15).decode(errors="replace").splitlines()
            raise LabError(f"the lab {plan.name} stopped while starting", details=logs,
                           fix=f"see `labctl logs {plan.name}`; `labctl doctor {plan.spec}`")
        try:
            if requests.get(f"http://{host}:{port}/api", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise LabError(f"Jupyter in {plan.name} did not answer within {timeout:.0f}s",
                   fix=f"see `labctl logs {plan.name}`")


def run(engine: Engine, plan: RunPlan, *, detach: bool, keep: bool,
        say: Callable[[str], None]) -> int:
    """Start the lab. Foreground: stream its output until it ends or Ctrl-C, then remove
    it; the command's exit code is returned. Detached: return once it is ready."""
    create_host_dirs(plan.host_dirs)
    interactive = not detach and plan.jupyter_port is None and sys.stdin.isatty()
    container = engine.create_container(plan, tty=interactive)
    try:
        if interactive:
            return engine.attach_cli(container)
        engine.start(container)
        if plan.jupyter_port is not None:
            say(f"waiting for Jupyter in {plan.name} ...")
            wait_ready(engine, container, plan)
            say(f"JupyterLab is ready: {plan.url}")
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


def lab_containers(engine: Engine, all: bool = False) -> list[Any]:
    return engine.containers(LABEL_RUN, all=all)


def find_lab_container(engine: Engine, name: str) -> Any | None:
    """A running lab by container name, or the first running lab of a spec name."""
    for c in lab_containers(engine):
        if c.name == name:
            return c
    return next((c for c in lab_containers(engine) if c.labels.get(LABEL_SPEC) == name), None)
