"""`labctl hub`: a JupyterHub with DockerSpawner for one Docker host, or SwarmSpawner on a
swarm this engine manages, from the lab folder's specs. The hub runs as a process of the
teacher's (from a venv of the pinned requirements, .labctl/hub/venv); the learners' servers
are containers of the lab images with labctl's hub layer, on a bridge network of their own
whose gateway is where the hub's API listens; on a swarm, services of those images pulled
from the class registry, reaching the hub at the manager's swarm address. The proxy listens
where the teacher says (loopback by default).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.config.lab import Lab
from labctl.engine import Engine
from labctl.errors import LabError
from labctl.export.profiles import SHARED, LabProfile, lab_profile
from labctl.gpu.access import gpu_mode
from labctl.hub import files
from labctl.runtime.plan import LAB_UID
from labctl.runtime.run import create_host_dirs

PROCESS_FILE = "jupyterhub.pid"  # the hub writes it (jupyterhub_config.py)
LOG_FILE = "hub.log"
VENV = "venv"
READY_TIMEOUT = 90.0


def hub_id(lab: Lab) -> str:
    """One hub per lab folder: its containers, volumes and network carry this id."""
    return hashlib.sha256(str(lab.root.resolve()).encode()).hexdigest()[:8]


def folder(lab: Lab) -> Path:
    return lab.state_dir("hub")


def network_name(lab: Lab) -> str:
    return f"labctl-hub-{hub_id(lab)}"


# --- the images -------------------------------------------------------------------------
def hub_image(engine: Engine, lab: Lab, name: str, profile: LabProfile, version: str) -> str:
    """The lab image with labctl's hub layer above it (jupyterhub-singleuser at the hub's
    version), built once per lab image: a rebuilt lab gets a new hub layer."""
    base = lab.image_tag(name)
    img = engine.image(base)
    if img is None:
        raise LabError(f"{name} is not built ({base})",
                       id="hub.not-built", fix=f"labctl build {name}")
    tag = files.hub_tag(base, version)
    if (engine.image_labels(tag) or {}).get(files.HUB_BASE_LABEL) == img.id:
        return tag
    text = files.layer_dockerfile(base, version, list(profile.own.values()))
    text += f'LABEL {files.HUB_BASE_LABEL}="{img.id}"\n'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text.encode())
        tar.addfile(info, io.BytesIO(text.encode()))
    net = lab.settings.network
    args = {k: v for k in ("http_proxy", "https_proxy", "no_proxy")
            if (v := getattr(net, k))}
    image_id, tail = "", []
    for attempt in (1, 2):  # one more try: a download that timed out is the usual failure
        buf.seek(0)
        error = ""
        for ev in engine.build(buf, buildargs={**args, **{k.upper(): v
                                                          for k, v in args.items()}},
                               network_mode="host" if lab.settings.build_network == "host"
                               else None):
            if "error" in ev:
                error = ev["error"].strip()
            if "ID" in (ev.get("aux") or {}):
                image_id = ev["aux"]["ID"]
            tail += [ln for ln in (ev.get("stream") or "").splitlines() if ln.strip()]
        if not error:
            break
        if attempt == 2:
            raise LabError(f"the hub layer of {name} did not build: {error}",
                           id="hub.layer-build-failed",
                           details=tail[-10:],
                           fix="check the network (the layer installs jupyterhub=="
                               f"{version} from the lab's index), then run it again")
    if not image_id:
        raise LabError(f"the hub layer of {name} ended without an image",
                       id="hub.layer-no-image", details=tail[-10:])
    engine.tag(image_id, tag)
    return tag


def swarm_address(engine: Engine) -> str:
    """The manager's address in its swarm: where the hub's API listens for every node."""
    address = engine.swarm_manager_address()
    if address is None:
        raise LabError("--swarm: this engine is not a manager of a Docker Swarm",
                       id="hub.not-a-swarm-manager",
                       fix="run labctl hub on a manager node (`docker swarm init` makes this"
                           " machine one; `docker swarm join` adds the others)")
    return address


def publish(engine: Engine, lab: Lab, name: str, tag: str, say: Any) -> str:
    """The hub image of ``name`` in the class registry, as REF@DIGEST: every node pulls
    that very image (`labctl push`'s registry: and login)."""
    ref = lab.registry_ref(name)
    assert ref is not None  # files.check_swarm: there is a registry
    ref = files.hub_tag(ref, files.hub_version())
    image = engine.image(tag)
    assert image is not None  # hub_image made it
    engine.tag(image.id, ref)
    say(f"{name}: pushing {ref} (every node of the swarm pulls it)")
    return f"{ref}@{engine.push(ref)}"


def device_requests(engine: Engine) -> list[dict[str, Any]]:
    """How a GPU lab's server gets the GPU on this engine (as `labctl run --gpus all`)."""
    mode = gpu_mode(engine)
    if mode == "runtime":
        return [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]
    if mode == "cdi":
        return [{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=all"]}]
    return []


# --- the proxy and the hub's python ------------------------------------------------------
def proxy_command(python: Path | None) -> str:
    """configurable-http-proxy: on PATH, or next to the hub's python."""
    here = [python.parent] if python is not None else []
    for where in [*here, None]:
        found = shutil.which("configurable-http-proxy",
                             path=str(where) if where is not None else None)
        if found:
            return found
    raise LabError("configurable-http-proxy (JupyterHub's proxy, from npm) is not installed",
                   id="hub.no-proxy",
                   fix=f"npm install -g configurable-http-proxy@{files.proxy_version()}")


def default_python(lab: Lab) -> Path:
    return folder(lab) / VENV / "bin" / "python"


def ensure_venv(lab: Lab, say: Any) -> Path:
    """.labctl/hub/venv with the pinned requirements (made once)."""
    python = default_python(lab)
    if not python.exists():
        venv = python.parent.parent
        say(f"making the hub's venv {venv} (requirements: {files.REQUIREMENTS_FILE})")
        for cmd in ([sys.executable, "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", "--quiet", "-r",
                     str(files.hub_source(files.REQUIREMENTS_FILE))]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise LabError("the hub's venv could not be made", id="hub.venv-failed",
                               details=(proc.stderr or proc.stdout).splitlines()[-10:],
                               fix="check the network, or pass --python with a Python that"
                                   " has the packages of the requirements file")
    return python


def hub_python(lab: Lab, given: str | None, make: bool, say: Any) -> Path | None:
    """The Python that runs the hub: ``given`` (--python), else, to start the hub
    (``make``), .labctl/hub/venv, made once; None for a hub only written, whose proxy
    is then looked for on PATH alone."""
    if given:
        return Path(given).absolute()
    return ensure_venv(lab, say) if make else None


def check_python(python: Path) -> None:
    """The hub's python has the pinned packages: its jupyterhub is the images' one."""
    want = files.requirements()
    code = ("import json, importlib.metadata as m; print(json.dumps({n: m.version(n) for n in "
            f"{sorted(want)!r}}}))")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    have = json.loads(proc.stdout) if proc.returncode == 0 else {}
    wrong = {n: v for n, v in want.items() if have.get(n) != v}
    if wrong:
        raise LabError(f"{python} does not have the hub's packages: "
                       + ", ".join(f"{n}=={v}" for n, v in wrong.items()), id="hub.wrong-packages",
                       fix=f"{python} -m pip install -r "
                           f"{files.hub_source(files.REQUIREMENTS_FILE)}")


# --- write, up, down, status ------------------------------------------------------------
@dataclass(frozen=True)
class Written:
    """What `labctl hub write` wrote: the hub's folder and its hub.json."""

    folder: Path
    doc: dict[str, Any]

    @property
    def profiles(self) -> list[str]:
        return [p["slug"] for p in self.doc["profiles"]]

    def as_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "url": self.doc["url"], "profiles": self.profiles}


def write(engine: Engine, lab: Lab, names: tuple[str, ...], s: files.HubSettings,
          python: Path | None, say: Any = lambda text: None) -> Written:
    """Build the hub images, make the network and write the files."""
    files.check_swarm(s, lab.settings.registry)
    manager = swarm_address(engine) if s.swarm else None  # before anything is built
    if not engine.is_local():
        raise LabError("labctl hub runs the hub on this machine, next to its engine; this"
                       " engine is another machine's", id="hub.engine-not-local",
                       fix="unset DOCKER_HOST (or `docker context use default`), or run"
                           " labctl hub on the server")
    files.check_settings(s)
    proxy = proxy_command(python)
    version = files.hub_version()
    profiles, images, hosts = [], {}, {}
    for name in names:
        spec = lab.spec(name)
        plain = lab_profile(lab, spec, lab.image_tag(name))
        say(f"{name}: the hub layer (jupyterhub-singleuser {version})")
        images[name] = hub_image(engine, lab, name, plain, version)
        profiles.append(lab_profile(lab, spec, images[name]))
        for vol in spec.volumes:
            if vol in SHARED:
                hosts[vol] = str(lab.host_path(lab.volumes[vol]))
    create_host_dirs([Path(p) for p in hosts.values()])
    for host in hosts.values():  # the servers run as the image's lab user, not as you
        if Path(host).stat().st_mode & 0o005 != 0o005:
            say(f"warning: the learners cannot read {host} (their servers run as uid"
                f" {LAB_UID}): chmod o+rx {host}, and o+r its files")
    if manager is not None:
        images = {n: publish(engine, lab, n, tag, say) for n, tag in images.items()}
        if any(p.gpu for p in profiles):
            say("warning: on a swarm the GPU labs' servers start without a GPU (swarm GPUs"
                " need node-generic-resources on each node; not set up by labctl)")
        gpus: list[dict[str, Any]] = []
        # The servers join no network of the hub's: they publish their port on their node,
        # and reach the hub's API at the manager's swarm address.
        network, hub_ip = "", manager
    else:
        gpus = device_requests(engine) if any(p.gpu for p in profiles) else []
        if any(p.gpu for p in profiles) and not gpus:
            say("warning: this engine has no GPU access: the GPU labs' servers start"
                " without one")
        network = network_name(lab)
        hub_ip = engine.bridge_network(network, {files.HUB_LABEL: hub_id(lab)})
    where = folder(lab)
    place = files.HubPlace(hub_id=hub_id(lab), state=where, network=network, hub_ip=hub_ip,
                           proxy=proxy)
    doc = files.settings_document(s, place, profiles, images, hosts, gpus)
    files.write(where, doc)
    return Written(where, doc)


@dataclass
class Status:
    pid: int | None
    url: str | None
    servers: list[dict[str, str]]

    @property
    def running(self) -> bool:
        return self.pid is not None

    def as_dict(self) -> dict[str, Any]:
        return {"running": self.running, "pid": self.pid, "url": self.url,
                "servers": self.servers}


@dataclass(frozen=True)
class Started:
    """A hub that answers: its process, where learners reach it, its folder."""

    pid: int
    url: str
    folder: Path

    @property
    def log(self) -> Path:
        return self.folder / LOG_FILE

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "url": self.url, "folder": str(self.folder),
                "log": str(self.log)}


def _hub_pid(where: Path) -> int | None:
    """The hub's pid when that process is this folder's jupyterhub."""
    try:
        pid = int((where / PROCESS_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    config = str(where / files.CONFIG_FILE).encode()
    return pid if config in cmdline else None


def _answers(url: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/hub/api", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def refuse_running(lab: Lab) -> None:
    if (pid := _hub_pid(folder(lab))) is not None:
        raise LabError(f"the hub of this lab folder runs already (pid {pid})",
                       id="hub.already-running",
                       fix="`labctl hub down` first, to start it with the new settings")


def up(lab: Lab, doc: dict[str, Any], python: Path) -> Started:
    """Start the hub (a background process of this user's) and wait until it answers."""
    where = folder(lab)
    refuse_running(lab)
    check_python(python)
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with (where / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(
            [str(python), "-m", "jupyterhub", "-f", str(where / files.CONFIG_FILE)],
            cwd=where, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while not _answers(doc["url"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            tail = (where / LOG_FILE).read_text(errors="replace").splitlines()[-15:]
            raise LabError("the hub did not start", id="hub.start-failed", details=tail,
                           fix=f"read {where / LOG_FILE}; a port in use: --port")
        time.sleep(0.5)
    return Started(proc.pid, doc["url"], where)


def down(engine: Engine, lab: Lab, timeout: float = 60) -> bool:
    """Stop the hub (it stops the learners' servers) and remove what is left of them;
    their volumes stay. False when no hub ran."""
    where = folder(lab)
    pid = _hub_pid(where)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for svc in engine.services([f"{files.HUB_LABEL}={hub_id(lab)}"]):
        engine.remove_service(svc["ID"])
    for c in engine.containers([f"{files.HUB_LABEL}={hub_id(lab)}"]):
        if not _swarm_task(c):  # a service's task goes with its service
            engine.remove_container(c)
    return pid is not None


def _swarm_task(container: Any) -> bool:
    return "com.docker.swarm.service.id" in (container.labels or {})


def status(engine: Engine, lab: Lab) -> Status:
    where = folder(lab)
    url = None
    with contextlib.suppress(OSError, ValueError):
        url = json.loads((where / files.SETTINGS_FILE).read_text())["url"]
    label = f"{files.HUB_LABEL}={hub_id(lab)}"
    servers = [{"name": c.name, "status": c.status, "image": (c.image.tags or [c.image.id])[0]}
               for c in engine.containers([label]) if not _swarm_task(c)]
    servers += [{"name": svc["Spec"]["Name"], "status": "service",
                 "image": svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]}
                for svc in engine.services([label])]
    return Status(_hub_pid(where), url, servers)
