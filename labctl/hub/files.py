"""The files of a JupyterHub deployment for one lab folder (pure: no engine).

`labctl hub write` puts three files in .labctl/hub/: jupyterhub_config.py (a copy of
incontainer/hub/jupyterhub_config.py, never edited by labctl), requirements.txt (the hub's
pinned packages) and hub.json, the only file that changes: where the hub listens, who
signs in how, and one profile per lab from export/profiles.py (the same limits, volumes
and GPU as the Kubernetes exports).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from labctl import resources
from labctl.errors import LabError
from labctl.export.profiles import LabProfile

CONFIG_FILE = "jupyterhub_config.py"
SETTINGS_FILE = "hub.json"
REQUIREMENTS_FILE = "requirements.txt"
LOCAL_CONFIG = "jupyterhub_config_local.py"  # the teacher's own additions (an OAuth login)
Auth = Literal["native", "pam"]
HUB_LABEL = "org.labctl.hub"  # on the hub images (the version), servers and network (id)
HUB_BASE_LABEL = "org.labctl.hub.base"  # the lab image a hub image was built on


def hub_source(name: str) -> Path:
    return resources.incontainer_dir() / "hub" / name


def requirements() -> dict[str, str]:
    """The hub's pinned packages: name -> version."""
    out = {}
    for line in hub_source(REQUIREMENTS_FILE).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.strip().lower()] = version.strip()
    return out


def hub_version() -> str:
    return requirements()["jupyterhub"]


def proxy_version() -> str:
    """configurable-http-proxy's version, from the requirements file's comment."""
    m = re.search(r"configurable-http-proxy@([0-9.]+)", hub_source(REQUIREMENTS_FILE).read_text())
    assert m, "incontainer/hub/requirements.txt names configurable-http-proxy@VERSION"
    return m.group(1)


def hub_tag(lab_tag: str, version: str) -> str:
    """The hub image of a lab image: same repository, tag hub-VERSION."""
    repo = lab_tag.rsplit(":", 1)[0] if ":" in lab_tag.rsplit("/", 1)[-1] else lab_tag
    return f"{repo}:hub-{version}"


def layer_dockerfile(base: str, version: str, own: list[str]) -> str:
    """labctl's hub layer above a lab image: jupyterhub-singleuser at the hub's version,
    and the learner's own mount points made the lab user's, so a new named volume starts
    as theirs (Docker copies the image folder's owner into it). The lab's entrypoint
    stays: the server starts as root only to drop to the lab user."""
    folders = " ".join(sorted(set(own)))
    return "\n".join([
        f"FROM {base}",
        f"RUN uv pip install --python /opt/venv/bin/python \"jupyterhub=={version}\" \\",
        f" && install -d -o lab -g lab {folders}",
        f'LABEL {HUB_LABEL}="{version}"',
        'CMD ["jupyterhub-singleuser"]',
        "",
    ])


@dataclass
class HubSettings:
    """What the teacher decides (`labctl hub write` options)."""

    bind: str = "127.0.0.1"  # where learners reach the hub (its proxy)
    port: int = 8000
    auth: Auth = "native"
    admins: list[str] = field(default_factory=list)
    pam_group: str | None = None  # pam: only members of this group sign in
    cull_idle: int = 3600  # seconds a server may sit idle before it is stopped
    swarm: bool = False
    start_timeout: int = 300


def check_settings(s: HubSettings) -> None:
    """What the teacher must decide before anything is built."""
    if s.auth == "native" and not s.admins:
        raise LabError("the hub needs an admin to approve sign-ups", id="hub.no-admin",
                       fix="pass --admin NAME (the teacher's hub account)")


def check_swarm(s: HubSettings, registry: str | None) -> None:
    """A swarm's nodes pull the hub images from the class registry: one is needed."""
    if s.swarm and not registry:
        raise LabError("--swarm needs the class registry: every node pulls the labs' hub"
                       " images from it", id="hub.swarm-needs-registry", file="labctl.yaml",
                       fix="set registry: HOST[:PORT][/PREFIX] in labctl.yaml (a registry"
                           " every node reaches; `docker login HOST` first if it asks)")


@dataclass(frozen=True)
class HubPlace:
    """Where this lab folder's hub runs (deploy finds it out)."""
    hub_id: str
    state: Path  # its database, cookie secret, pid files, log
    network: str  # the Docker network of the hub and the learners' servers
    hub_ip: str  # where the hub's API listens: the network's gateway (one host), or the
    # manager's swarm address (a swarm), which the servers reach
    proxy: str  # the configurable-http-proxy command


def settings_document(s: HubSettings, place: HubPlace, profiles: list[LabProfile],
                      images: dict[str, str], hosts: dict[str, str],
                      device_requests: list[dict[str, Any]]) -> dict[str, Any]:
    """hub.json: everything jupyterhub_config.py reads. ``images``: lab name -> the hub
    image the spawner starts; ``hosts``: shared volume -> its host folder."""
    check_settings(s)
    hub_id = place.hub_id
    if not profiles:
        raise LabError("no lab to offer on the hub", id="hub.no-labs",
                       fix="name the labs: `labctl hub write"
                       " NAME...` (each built with `labctl build NAME`)")
    return {
        "id": hub_id,
        "url": f"http://{'[' + s.bind + ']' if ':' in s.bind else s.bind}:{s.port}/",
        "proxy_api_url": f"http://127.0.0.1:{s.port + 1}",
        "proxy_command": place.proxy,
        "hub_ip": place.hub_ip,
        "hub_port": s.port + 2,
        "state": str(place.state),
        "network": place.network,
        "prefix": f"labctl-hub-{hub_id}",
        "swarm": s.swarm,
        "auth": s.auth,
        "admins": sorted(set(s.admins)),
        "pam_group": s.pam_group,
        "cull_idle": s.cull_idle,
        "start_timeout": s.start_timeout,
        "settings": asdict(s),
        "profiles": [profile_entry(p, images[p.name], hosts, device_requests)
                     for p in profiles],
    }


def profile_entry(p: LabProfile, image: str, hosts: dict[str, str],
                  device_requests: list[dict[str, Any]]) -> dict[str, Any]:
    """One lab as DockerSpawner starts it (jupyterhub_config.py applies it): the shared
    folders read-only (host folder -> container path), the learner's own as volumes."""
    return {
        "slug": p.slug, "name": p.name, "description": p.description, "image": image,
        "env": dict(sorted(p.env.items())), "workdir": p.workdir,
        "shared": {hosts[k]: path for k, path in p.shared.items()}, "own": p.own,
        "cpu_limit": float(p.cpu), "mem_limit": p.memory_bytes, "shm_size": p.shm_bytes,
        "gpu": p.gpu, "device_requests": device_requests if p.gpu else [],
    }


def write(folder: Path, doc: dict[str, Any]) -> list[Path]:
    """The config (copied), the requirements (copied) and hub.json into ``folder``."""
    from labctl.config.safewrite import write_atomic

    out = []
    for name in (CONFIG_FILE, REQUIREMENTS_FILE):
        path = folder / name
        write_atomic(path, hub_source(name).read_bytes())
        out.append(path)
    path = folder / SETTINGS_FILE
    write_atomic(path, json.dumps(doc, indent=2, sort_keys=True) + "\n", private=True)
    out.append(path)
    return out
