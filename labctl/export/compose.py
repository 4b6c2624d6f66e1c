"""`labctl compose`: a Compose file with one service per lab, from the run plans of
`labctl run NAME --user`: the same image, user mapping, mounts, environment and
loopback-only ports; the Jupyter token comes from an env file of its own (0600, kept out
of git), never from the Compose file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.config.lab import Lab
from labctl.config.safewrite import write_atomic
from labctl.gpu.compat import gpu_use
from labctl.runtime.plan import TOKEN_IN_CONTAINER, RunPlan

ENV_FILE = ".labctl/compose.env"  # relative to the lab folder (and so to the file's dir)


def service(plan: RunPlan, gpu: bool) -> dict[str, Any]:
    """One service: what `labctl run` would start. The token is not in it: the service
    reads JUPYTER_TOKEN from the env file."""
    env = {k: v for k, v in plan.env.items() if k not in ("JUPYTER_TOKEN",
                                                            "JUPYTER_TOKEN_FILE")}
    svc: dict[str, Any] = {
        "image": plan.image,
        "command": plan.command,
        "working_dir": plan.workdir,
        "environment": env,
        # The long syntax: in SRC:DST:MODE a ':' of a folder's name would add a mode
        "volumes": [{"type": "volume" if m.volume else "bind", "source": str(m.source),
                     "target": m.target,
                     **({"read_only": True} if m.read_only else {})}
                    for m in plan.mounts if m.target != TOKEN_IN_CONTAINER],
        "ports": [f"{ip}:{host}:{cport}" if ":" not in ip else f"[{ip}]:{host}:{cport}"
                  for cport, binds in plan.publish().items() for ip, host in binds],
        "shm_size": plan.shm_size,
        "security_opt": ["no-new-privileges:true"],
        "labels": dict(plan.labels),
    }
    if plan.jupyter_port is not None:
        svc["env_file"] = [ENV_FILE]
    if gpu:
        svc["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}}
    return svc


def document(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"services": services}


def write(out: Path, services: dict[str, dict[str, Any]], env_file: Path) -> None:
    """The Compose file at ``out``; its services name ``env_file`` by its absolute path
    when ``out`` is not in the lab folder (Compose reads it relative to the file)."""
    if out.parent != env_file.parent.parent:
        for svc in services.values():
            if "env_file" in svc:
                svc["env_file"] = [str(env_file)]
    text = ("# Written by `labctl compose`; `docker compose up` (or docker-compose up)"
            " starts the labs.\n# The Jupyter token is in " + ENV_FILE + " (0600).\n"
            + yaml.safe_dump(document(services), sort_keys=False, allow_unicode=True))
    write_atomic(out, text)  # a link planted at compose.yaml is replaced, not written through


@dataclass(frozen=True)
class Written:
    """What `labctl compose` wrote."""

    file: Path
    services: list[str]  # the labs, one service each
    env_file: Path  # the Jupyter token, 0600

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "services": self.services,
                "env_file": str(self.env_file)}


def export(lab: Lab, plans: dict[str, RunPlan], out: Path | None, env_file: Path) -> Written:
    """The Compose file of ``plans`` (spec name -> its run plan) at ``out`` (None:
    compose.yaml in the lab folder). A service reserves the GPUs only for a lab that
    asks for a GPU: Compose would refuse to start it on a machine without one."""
    services = {name: service(plan, gpu_use(lab.spec(name)) in ("required", "wanted"))
                for name, plan in plans.items()}
    out = out or lab.root / "compose.yaml"
    write(out, services, env_file)
    return Written(out, list(services), env_file)
