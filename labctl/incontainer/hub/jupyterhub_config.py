"""JupyterHub for a labctl lab folder: `labctl hub write` copies this file as it is and
writes hub.json next to it, which holds every value (edit the options, not this file).

- The proxy listens where the teacher said (loopback by default); the hub's API listens on
  the gateway of the hub's own Docker network, where the learners' servers reach it.
- Sign-in: NativeAuthenticator (learners sign up, an admin approves each one) or the
  system's PAM users; jupyterhub_config_local.py next to this file, when there is one, is
  read last (another authenticator, more settings).
- One profile per lab: its hub image (the lab plus jupyterhub-singleuser at this hub's
  version), the class's data and cache read-only, the learner's own work folder and
  volumes as named volumes of theirs, memory, CPU, /dev/shm and the GPU from the same
  profile data as `labctl export k8s`.
- With --swarm, each server is a swarm service (SwarmSpawner) from the image in the class
  registry (REF@DIGEST), its port published on its own node; the hub's API listens on the
  manager's swarm address.
- Each server runs as the image's non-root lab user; idle servers are stopped
  (jupyterhub-idle-culler); a server's container is removed when it stops, its volumes
  stay.
"""

import asyncio
import html
import json
import os
import sys
from pathlib import Path

import docker.errors
from dockerspawner import DockerSpawner
from tornado import web

c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)
HERE = Path(__file__).resolve().parent
S = json.loads((HERE / "hub.json").read_text(encoding="utf-8"))
STATE = Path(S["state"])

# --- where it listens ---------------------------------------------------------------
c.JupyterHub.bind_url = S["url"]
c.JupyterHub.hub_ip = S["hub_ip"]
c.JupyterHub.hub_port = S["hub_port"]
c.JupyterHub.hub_connect_ip = S["hub_ip"]
c.ConfigurableHTTPProxy.api_url = S["proxy_api_url"]
c.ConfigurableHTTPProxy.command = [S["proxy_command"]]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + str(STATE / "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # `labctl hub down` stops the learners' servers too
# Signing in opens the hub's home page, where a learner starts a lab: an admin who signs
# in to approve sign-ups starts none.
c.JupyterHub.redirect_to_server = False

# --- who signs in -------------------------------------------------------------------
c.Authenticator.admin_users = set(S["admins"])
if S["auth"] == "native":
    c.JupyterHub.authenticator_class = "native"
    c.NativeAuthenticator.open_signup = False  # an admin approves each sign-up
    c.NativeAuthenticator.minimum_password_length = 8
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.allowed_failed_logins = 5
    c.NativeAuthenticator.seconds_before_next_try = 60
    c.Authenticator.allow_all = True  # every account an admin approved
elif S["auth"] == "pam":
    c.JupyterHub.authenticator_class = "pam"
    if S.get("pam_group"):
        c.PAMAuthenticator.allowed_groups = {S["pam_group"]}
    else:
        c.Authenticator.allow_all = True
else:
    raise ValueError(f"hub.json: auth {S['auth']!r} is neither 'native' nor 'pam'")

# --- idle servers are stopped -------------------------------------------------------
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                f"--timeout={int(S['cull_idle'])}"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]

# --- the learners' servers ------------------------------------------------------------
PROFILES = {p["slug"]: p for p in S["profiles"]}
DEFAULT = S["profiles"][0]["slug"]

class LabDockerSpawner(DockerSpawner):
    """DockerSpawner whose stop ends when the container is gone. With remove=True Docker
    removes a stopped container by itself (auto_remove), after stop() returns: a learner
    who starts again at once met the old container's name ("already in use": a 500)."""

    async def remove_object(self):
        await super().remove_object()
        for _ in range(120):
            try:
                await self.docker("inspect_" + self.object_type, self.object_id)
            except docker.errors.NotFound:
                return
            await asyncio.sleep(0.5)
        self.log.warning("%s %s is still there after a minute", self.object_type,
                         self.object_id[:12])


c.JupyterHub.spawner_class = LabDockerSpawner
c.DockerSpawner.image = S["profiles"][0]["image"]
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]  # through the image's entrypoint
c.DockerSpawner.network_name = S["network"]
c.DockerSpawner.use_internal_ip = True
SERVER_PORT = 8888
c.Spawner.port = SERVER_PORT

if S["swarm"]:
    from dockerspawner import SwarmSpawner

    class LabSwarmSpawner(SwarmSpawner):
        """A service per server, its port published on the node its task runs on (host
        mode, DNS round robin: no routing mesh, no IPVS), found there: the hub reaches
        servers on any node, the servers reach the hub at the manager's address."""

        async def get_ip_and_port(self):
            task = await self.get_task()
            status = (task or {}).get("Status") or {}
            ports = (status.get("PortStatus") or {}).get("Ports") or []
            port = next((p["PublishedPort"] for p in ports
                         if p.get("TargetPort") == self.port), None)
            if port is None:
                raise RuntimeError(f"{self.service_name} publishes no port: {status}")
            node = await self.docker("inspect_node", task["NodeID"])
            return node["Status"]["Addr"], port

    c.JupyterHub.spawner_class = LabSwarmSpawner
    c.SwarmSpawner.use_internal_ip = False
    c.SwarmSpawner.extra_endpoint_spec = {"mode": "dnsrr",
                                          "ports": {None: (SERVER_PORT, "tcp", "host")}}
c.DockerSpawner.remove = True  # a fresh container from the image at each start
c.DockerSpawner.prefix = S["prefix"]
c.DockerSpawner.pull_policy = "skip" if S["swarm"] else "never"
c.DockerSpawner.extra_create_kwargs = {"labels": {"org.labctl.hub": S["id"]}}
c.Spawner.start_timeout = int(S["start_timeout"])
c.Spawner.http_timeout = int(S["start_timeout"])

if len(PROFILES) > 1:  # names and descriptions come from specs: escaped, never markup
    c.Spawner.options_form = "<label for='profile'>Lab</label><select name='profile'" \
        " class='form-control'>" + "".join(
            f"<option value='{html.escape(slug, quote=True)}'>"
            f"{html.escape(p['name'])}: {html.escape(p['description'])}</option>"
            for slug, p in PROFILES.items()) + "</select>"


def _options_from_form(formdata):
    return {"profile": formdata.get("profile", [DEFAULT])[0]}


c.Spawner.options_from_form = _options_from_form


def apply_profile(spawner):
    """The chosen lab's image, folders, limits and GPU on this learner's server."""
    slug = (spawner.user_options or {}).get("profile") or DEFAULT
    p = PROFILES.get(slug)
    if p is None:
        raise web.HTTPError(400, f"no lab {slug!r} on this hub: {', '.join(PROFILES)}")
    spawner.image = p["image"]
    spawner.environment = {**p["env"], "LABCTL_WORKSPACE": p["workdir"]}
    spawner.notebook_dir = p["workdir"]
    spawner.read_only_volumes = dict(p["shared"])
    spawner.volumes = {f"{S['prefix']}-{{username}}-{name}": path
                       for name, path in p["own"].items()}
    spawner.mem_limit = p["mem_limit"]
    spawner.cpu_limit = p["cpu_limit"]
    if S["swarm"]:
        swarm_mounts(spawner, p)
        return
    host = {"shm_size": p["shm_size"], "pids_limit": 4096,
            "security_opt": ["no-new-privileges"]}
    if p["device_requests"]:
        host["device_requests"] = p["device_requests"]
    spawner.extra_host_config = host


def swarm_mounts(spawner, p):
    """A service's folders as mounts (SwarmSpawner binds every volume as a host path):
    the class's folders read-only (the same path on every node: a shared file system),
    the learner's own as named volumes (on the node of their server), /dev/shm as a
    tmpfs of the profile's size. The service and its task carry the hub's label."""
    from docker.types import Mount

    mounts = [Mount(target=path, source=host, type="bind", read_only=True)
              for host, path in p["shared"].items()]
    mounts += [Mount(target=path, type="volume", source=spawner.format_volume_name(
        f"{S['prefix']}-{{username}}-{name}", spawner)) for name, path in p["own"].items()]
    mounts.append(Mount(target="/dev/shm", source=None, type="tmpfs",
                        tmpfs_size=p["shm_size"]))
    spawner.read_only_volumes, spawner.volumes = {}, {}
    labels = {"org.labctl.hub": S["id"]}
    spawner.extra_container_spec = {"mounts": mounts, "labels": labels}
    spawner.extra_create_kwargs = {"labels": labels}


c.Spawner.pre_spawn_hook = apply_profile

local = HERE / "jupyterhub_config_local.py"
if local.exists():
    load_subconfig(str(local))  # noqa: F821 (JupyterHub's config loader defines it)

os.umask(0o077)  # the hub's database and cookie secret: the teacher's alone
