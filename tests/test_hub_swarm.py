"""`labctl hub --swarm` for real: a second Docker host made by the test (a network namespace
with its own rootful dockerd, netns_host.py) becomes a one-node swarm (the main engine's
swarm mode is not touched), a registry started by the test in that namespace is the
class registry, and JupyterHub's SwarmSpawner starts a learner's server as a swarm service
from the image the node pulled from it. The learner signs up, is approved, logs in through
the hub's form, runs code through the proxy with their own token; the shared data is read
only, the work survives a stop and a start, the server refuses a request without the
learner's login. It needs root for the namespace: ./scripts/test.sh runs it as root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import BASE, write_lab
from netns_host import Host, netns_engine
from test_hub_engine import api, log_in, own_token, run_code, sign_up, start_server, stop_server

pytestmark = [pytest.mark.engine, pytest.mark.root]

SMALL = (f"base: {BASE}\npip: ['jupyterlab>=4.4,<5']\njupyter: true\n"
         "volumes: [data, cache]\ndescription: a small lab for the hub\n")
REGISTRY_PORT, HUB_PORT = 5000, 8000


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    if os.geteuid() != 0:
        pytest.skip("makes a network namespace: ./scripts/test.sh runs it as root")
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.fail("the swarm test needs Debian's docker-registry; ./scripts/test.sh"
                    " installs it")
    logs = tmp_path_factory.mktemp("swarm")
    with netns_engine("labctl-swarm", logs) as host:
        host.docker("swarm", "init", "--advertise-addr", host.address)
        (logs / "registry.yml").write_text(
            f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {logs / 'registry'}}}}}\n"
            f"http: {{addr: '127.0.0.1:{REGISTRY_PORT}'}}\n")
        host.start(exe, "serve", str(logs / "registry.yml"), log=host.state / "registry.log")
        try:
            yield host
        finally:
            host.docker("swarm", "leave", "--force", check=False)


def in_box(host: Host, *args: str, cwd: Path, timeout: int = 1800
           ) -> subprocess.CompletedProcess:
    """labctl in the namespace (where the hub it starts listens), with its engine."""
    env = {**os.environ, "DOCKER_HOST": host.socket, "COLUMNS": "200"}
    return subprocess.run(["nsenter", f"--net=/run/netns/{host.ns}", sys.executable, "-m",
                           "labctl", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_class_on_a_swarm_pulls_the_lab_from_the_class_registry(swarm: Host,
                                                                  tmp_path: Path) -> None:
    registry = f"127.0.0.1:{REGISTRY_PORT}"
    root = write_lab(tmp_path / "lab", {"small": SMALL}, f"registry: {registry}/class\n")
    (root / "data").mkdir()
    (root / "data").chmod(0o755)
    (root / "data" / "shared.txt").write_text("the class's dataset\n")
    (root / "data" / "shared.txt").chmod(0o644)
    (root / "cache").mkdir()
    (root / "cache").chmod(0o755)
    built = in_box(swarm, "build", "small", cwd=root)
    assert built.returncode == 0, built.stderr[-3000:]
    up = in_box(swarm, "hub", "up", "small", "--swarm", "--admin", "teacher", "--bind",
                swarm.address, "--port", str(HUB_PORT), "--python", sys.executable, "--json",
                cwd=root)
    hub_dir = root / ".labctl" / "hub"
    log = hub_dir / "hub.log"
    try:
        assert up.returncode == 0, up.stderr[-3000:] + (log.read_text()[-3000:]
                                                         if log.exists() else "")
        learner_session(swarm, root, json.loads((hub_dir / "hub.json").read_text()))
    finally:
        down = in_box(swarm, "hub", "down", cwd=root)
        print(log.read_text()[-4000:] if log.exists() else "no hub log")
        assert down.returncode == 0, down.stderr
    left = swarm.docker("service", "ls", "-q", "--filter", "label=org.labctl.hub").stdout
    assert not left.split(), left


def learner_session(swarm: Host, root: Path, doc: dict) -> None:
    url = f"http://{swarm.address}:{HUB_PORT}"
    # the image every node pulls: the registry's, pinned by digest
    image = doc["profiles"][0]["image"]
    assert image.startswith(f"127.0.0.1:{REGISTRY_PORT}/class/small:hub-") and "@sha256:" in image
    assert doc["hub_ip"] == swarm.address and doc["network"] == ""

    # The node keeps no copy of the hub image: the swarm must pull it from the registry.
    here = swarm.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    hub_refs = [r for r in here if r.endswith(image.split("@")[0].rsplit(":", 1)[1])]
    assert len(hub_refs) == 2, here  # labctl's hub tag and the registry's name
    swarm.docker("rmi", *hub_refs)
    registry_log = swarm.state / "registry.log"
    before = len(registry_log.read_text())  # the build's and the push's requests

    assert "successful" in sign_up(url, "teacher")
    assert "sent to the admin" in sign_up(url, "alice")
    admin = log_in(url, "teacher")
    assert admin.get(f"{url}/hub/authorize/alice", timeout=30).status_code == 200
    token = own_token(url, log_in(url, "alice"), "alice")
    seconds = [start_server(url, token, "alice")]

    services = json.loads(swarm.docker("service", "inspect", *swarm.docker(
        "service", "ls", "-q", "--filter", f"label=org.labctl.hub={doc['id']}").stdout.split()
    ).stdout)
    assert len(services) == 1, services
    spec = services[0]["Spec"]
    cs = spec["TaskTemplate"]["ContainerSpec"]
    assert cs["Image"] == image  # the node ran the registry's image, by digest
    limits = spec["TaskTemplate"]["Resources"]["Limits"]
    assert limits["MemoryBytes"] == 8 << 30 and limits["NanoCPUs"] == 2 * 10**9
    mounts = {m["Target"]: m for m in cs["Mounts"]}
    assert mounts["/data"]["ReadOnly"] is True and mounts["/data"]["Type"] == "bind"
    assert mounts["/workspace"]["Type"] == "volume"
    assert mounts["/workspace"]["Source"] == f"{doc['prefix']}-alice-work"
    assert mounts["/dev/shm"]["TmpfsOptions"]["SizeBytes"] == 2 << 30
    # pulled from the class registry: its manifest asked for by digest, the image back
    digest = image.rsplit("@", 1)[1]
    assert f"GET /v2/class/small/manifests/{digest}" in registry_log.read_text()[before:]
    pulled = swarm.docker("image", "ls", "--digests", "--format", "{{.Repository}} {{.Digest}}"
                          ).stdout
    assert f"127.0.0.1:{REGISTRY_PORT}/class/small {digest}" in pulled

    probe = ("import json, os, pathlib; r = {'uid': os.getuid(),"
             " 'data': open('/data/shared.txt').read(),"
             " 'shm': os.statvfs('/dev/shm').f_blocks * os.statvfs('/dev/shm').f_frsize,"
             " 'socket': os.path.exists('/var/run/docker.sock')}\n"
             "try:\n    open('/data/mine.txt', 'w'); r['data_write'] = 'written'\n"
             "except OSError as e:\n    r['data_write'] = e.errno\n"
             "pathlib.Path('/workspace/mine.txt').write_text('work of alice')\n"
             "print(json.dumps(r))")
    out = json.loads(run_code(url, token, "alice", probe).strip().splitlines()[-1])
    assert out["uid"] == 1000 and out["data"] == "the class's dataset\n"
    assert out["data_write"] == 30 and not (root / "data" / "mine.txt").exists()
    assert out["shm"] == 2 << 30 and out["socket"] is False

    # the server's own port on its node answers nobody without the learner's login
    task = json.loads(swarm.docker("inspect", swarm.docker(
        "ps", "-q", "--filter", f"label=org.labctl.hub={doc['id']}").stdout.split()[0]).stdout)
    published = task[0]["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
    bare = requests.get(f"http://{swarm.address}:{published}/user/alice/api/contents/mine.txt",
                        timeout=30, allow_redirects=False)
    assert bare.status_code in (302, 403), bare.status_code
    assert "work of alice" not in bare.text

    stop_server(url, token, "alice")
    seconds.append(start_server(url, token, "alice"))
    again = api(token).get(f"{url}/user/alice/api/contents/mine.txt", timeout=30)
    assert again.status_code == 200 and again.json()["content"] == "work of alice"
    status = json.loads(in_box(swarm, "hub", "status", "--json", cwd=root).stdout)
    assert status["running"] and [s["status"] for s in status["servers"]] == ["service"]
    print("note: swarm server: 8 GiB memory, 2 CPUs, 2 GiB /dev/shm, uid 1000; start to"
          f" usable Jupyter (s): first {seconds[0]:.1f} (pull), again {seconds[1]:.1f}")
