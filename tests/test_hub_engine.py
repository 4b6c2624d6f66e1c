"""`labctl hub` with a real JupyterHub, DockerSpawner and configurable-http-proxy on
127.0.0.1: two learners sign up through the hub's own form, the admin approves them, each
logs in, starts a small labctl lab and runs code in it through the proxy with their own
token; their work survives a stop and a start, neither reaches the other's server, and the
class's data folder is readable and not writable from the lab."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import BASE, labctl, write_lab

pytestmark = pytest.mark.engine

SMALL = (f"base: {BASE}\npip: ['jupyterlab>=4.4,<5']\njupyter: true\n"
         "volumes: [data, cache]\ndescription: a small lab for the hub\n")
PASSWORD = {"teacher": "t3acher-Secret-pw", "alice": "alice-Secret-pw-1",
            "bob": "bob-Secret-pw-22"}


def free_ports(n: int = 3) -> int:
    """A port P with P..P+n-1 free on 127.0.0.1 (the proxy, its API, the hub's API)."""
    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 30000
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free ports")


@pytest.fixture(scope="module")
def hub(docker_client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not shutil.which("configurable-http-proxy", path=str(Path(sys.executable).parent)
                        ) and not shutil.which("configurable-http-proxy"):
        pytest.fail("the hub test needs configurable-http-proxy (npm); ./scripts/setup.sh"
                    " installs it into the venv")
    root = write_lab(tmp_path_factory.mktemp("hub") / "lab", {"small": SMALL})
    (root / "data").mkdir()
    (root / "data").chmod(0o755)  # the class's data, readable by the learners' lab user
    (root / "data" / "shared.txt").write_text("the class's dataset\n")
    (root / "data" / "shared.txt").chmod(0o644)
    labctl("build", "small", cwd=root, check=True)
    port = free_ports()
    proc = labctl("hub", "up", "small", "--admin", "teacher", "--port", str(port),
                  "--python", sys.executable, "--json", cwd=root)
    hub_dir = root / ".labctl" / "hub"
    doc = json.loads((hub_dir / "hub.json").read_text()) if (hub_dir / "hub.json").exists() \
        else {}
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr + (
            (hub_dir / "hub.log").read_text()[-3000:] if (hub_dir / "hub.log").exists() else "")
        yield {"root": root, "url": f"http://127.0.0.1:{port}", "doc": doc,
               "up": json.loads(proc.stdout)}
    finally:
        down = labctl("hub", "down", cwd=root)
        print((hub_dir / "hub.log").read_text()[-4000:] if (hub_dir / "hub.log").exists()
              else "no hub log")
        assert down.returncode == 0, down.stderr
        if doc:
            for v in docker_client.volumes.list(filters={"name": doc["prefix"]}):
                with contextlib.suppress(Exception):
                    v.remove(force=True)
            with contextlib.suppress(Exception):
                docker_client.networks.get(doc["network"]).remove()


# --- the hub's web pages and API, as a browser and a script use them ---------------------
def _xsrf(html: str) -> str:
    m = re.search(r'name="_xsrf" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


def post_form(s: requests.Session, url: str, data: dict[str, str]) -> requests.Response:
    """GET the page, POST its form back with the page's own xsrf value."""
    page = s.get(url, timeout=30)
    assert page.status_code == 200, (url, page.status_code)
    return s.post(url, data={**data, "_xsrf": _xsrf(page.text)}, timeout=60)


def sign_up(hub_url: str, name: str) -> str:
    r = post_form(requests.Session(), f"{hub_url}/hub/signup",
                  {"username": name, "signup_password": PASSWORD[name],
                   "signup_password_confirmation": PASSWORD[name]})
    assert r.status_code == 200, r.text[:2000]
    return r.text


def log_in(hub_url: str, name: str) -> requests.Session:
    s = requests.Session()
    r = post_form(s, f"{hub_url}/hub/login", {"username": name, "password": PASSWORD[name]})
    assert r.status_code == 200 and "Invalid username" not in r.text, r.text[:1500]
    assert "not been authorized" not in r.text, r.text[:1500]
    return s


def own_token(hub_url: str, s: requests.Session, name: str) -> str:
    """A token of the learner's own, asked for with their login cookie (as the hub's
    token page does)."""
    xsrf = s.cookies.get("_xsrf", path="/hub/") or s.cookies.get("_xsrf")
    r = s.post(f"{hub_url}/hub/api/users/{name}/tokens", json={"note": "test"},
               headers={"X-XSRFToken": xsrf}, timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()["token"]


def api(token: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    return s


def start_server(hub_url: str, token: str, name: str) -> float:
    """Start the learner's server; seconds until its Jupyter answers through the proxy."""
    s = api(token)
    t0 = time.monotonic()
    r = s.post(f"{hub_url}/hub/api/users/{name}/server", json={"profile": "small"}, timeout=60)
    assert r.status_code in (201, 202), r.text
    deadline = t0 + 300
    while time.monotonic() < deadline:
        st = s.get(f"{hub_url}/user/{name}/api/status", timeout=30, allow_redirects=False)
        if st.status_code == 200:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError(f"{name}'s server did not answer: "
                         + s.get(f"{hub_url}/hub/api/users/{name}", timeout=30).text)


def stop_server(hub_url: str, token: str, name: str) -> None:
    s = api(token)
    r = s.delete(f"{hub_url}/hub/api/users/{name}/server", timeout=60)
    assert r.status_code in (202, 204), r.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        servers = s.get(f"{hub_url}/hub/api/users/{name}", timeout=30).json()["servers"]
        if not servers:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name}'s server did not stop")


def run_code(hub_url: str, token: str, name: str, code: str) -> str:
    """Run ``code`` in a new kernel of the learner's server (the Jupyter protocol over the
    proxy's websocket); its printed output."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    s = api(token)
    kernel = s.post(f"{hub_url}/user/{name}/api/kernels", json={}, timeout=60)
    assert kernel.status_code == 201, kernel.text
    kid = kernel.json()["id"]

    async def talk() -> str:
        ws = await websocket_connect(HTTPRequest(
            f"{hub_url.replace('http', 'ws', 1)}/user/{name}/api/kernels/{kid}/channels",
            headers={"Authorization": f"token {token}"}))
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": name, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False,
                        "stop_on_error": True}}))
        out = []
        while True:
            raw = await asyncio.wait_for(ws.read_message(), 120)
            assert raw is not None, "the kernel's websocket closed"
            m = json.loads(raw)
            if (m.get("parent_header") or {}).get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])
            elif m["msg_type"] == "error":
                raise AssertionError("\n".join(m["content"]["traceback"]))
            elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                ws.close()
                return "".join(out)

    try:
        return asyncio.run(talk())
    finally:
        s.delete(f"{hub_url}/user/{name}/api/kernels/{kid}", timeout=30)


PROBE = """
import json, os, pathlib, urllib.request, urllib.error
r = {"uid": os.getuid(), "data": open("/data/shared.txt").read(),
     "docker_socket": os.path.exists("/var/run/docker.sock")}
try:
    open("/data/mine.txt", "w")
    r["data_write"] = "written"
except OSError as e:
    r["data_write"] = e.errno
pathlib.Path("/workspace/mine.txt").write_text("work of " + os.environ["JUPYTERHUB_USER"])
other = OTHER
if other:
    req = urllib.request.Request(other, headers={
        "Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
    try:
        urllib.request.urlopen(req, timeout=5)
        r["other"] = 200
    except urllib.error.HTTPError as e:
        r["other"] = e.code
    except OSError as e:
        r["other"] = str(e)
print(json.dumps(r))
"""


def test_two_learners_each_get_their_own_lab_through_the_hub(hub: dict, docker_client
                                                              ) -> None:
    url, doc = hub["url"], hub["doc"]
    # the admin signs up first; the learners' sign-ups wait for the admin's approval
    assert "successful" in sign_up(url, "teacher")
    for name in ("alice", "bob"):
        assert "sent to the admin" in sign_up(url, name)
        s = requests.Session()
        r = post_form(s, f"{url}/hub/login", {"username": name, "password": PASSWORD[name]})
        assert "not been authorized" in r.text  # no lab before the admin says yes
    admin = log_in(url, "teacher")
    for name in ("alice", "bob"):
        r = admin.get(f"{url}/hub/authorize/{name}", timeout=30)
        assert r.status_code == 200, r.text[:500]
    tokens = {}
    for name in ("alice", "bob"):
        tokens[name] = own_token(url, log_in(url, name), name)
    seconds = {name: start_server(url, tokens[name], name) for name in ("alice", "bob")}

    # one server each, and none for the admin, who only signed in to approve
    by_name = {c.name.rsplit("-", 1)[-1]: c for c in docker_client.containers.list(
        filters={"label": f"org.labctl.hub={doc['id']}"})}
    assert set(by_name) == {"alice", "bob"}, by_name
    bob_ip = by_name["bob"].attrs["NetworkSettings"]["Networks"][doc["network"]]["IPAddress"]
    bob_url = f"http://{bob_ip}:8888/user/bob/api/contents"

    out = json.loads(run_code(url, tokens["alice"], "alice",
                              PROBE.replace("OTHER", repr(bob_url))).strip().splitlines()[-1])
    assert out["uid"] != 0 and out["uid"] == 1000  # the image's lab user, never root
    assert out["data"] == "the class's dataset\n"  # the shared data, readable
    assert out["data_write"] == 30  # EROFS: and not writable
    assert not (hub["root"] / "data" / "mine.txt").exists()
    assert out["docker_socket"] is False
    # bob's server is out of alice's reach: the hub's network carries no traffic between
    # learners' containers (and her token would open no door of bob's server anyway)
    assert out["other"] != 200 and "timed out" in str(out["other"]), out
    out = json.loads(run_code(url, tokens["bob"], "bob", PROBE.replace("OTHER", "None")
                              ).strip().splitlines()[-1])
    assert out["uid"] == 1000 and out["data_write"] == 30

    # through the hub's proxy, bob's token and bob's login reach only bob's server
    r = api(tokens["bob"]).get(f"{url}/user/alice/api/contents/mine.txt", timeout=30,
                               allow_redirects=False)
    assert r.status_code == 403, r.status_code
    r = log_in(url, "bob").get(f"{url}/user/alice/api/contents/mine.txt", timeout=30,
                               allow_redirects=False)
    assert r.status_code in (302, 403), r.status_code
    if r.status_code == 302:  # the login redirect: it ends in a refusal, never in the file
        assert "mine.txt" not in (r.headers.get("Location") or "") or "/hub/" in \
            r.headers["Location"]
    mine = api(tokens["alice"]).get(f"{url}/user/alice/api/contents/mine.txt", timeout=30)
    assert mine.status_code == 200 and mine.json()["content"] == "work of alice"

    # what each server got: the profile's limits, /dev/shm, the read-only data folder
    attrs = by_name["alice"].attrs
    hc = attrs["HostConfig"]
    assert hc["Memory"] == 8 << 30 and hc["ShmSize"] == 2 << 30
    assert hc["CpuQuota"] == 2 * hc["CpuPeriod"]
    assert "no-new-privileges" in hc["SecurityOpt"]
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/data"]["RW"] is False and mounts["/cache"]["RW"] is False
    assert mounts["/workspace"]["Type"] == "volume" and mounts["/workspace"]["RW"] is True
    assert mounts["/workspace"]["Name"] == f"{doc['prefix']}-alice-work"

    # the work survives a stop and a start (a new container from the image)
    stop_server(url, tokens["alice"], "alice")
    seconds["alice again"] = start_server(url, tokens["alice"], "alice")
    again = api(tokens["alice"]).get(f"{url}/user/alice/api/contents/mine.txt", timeout=30)
    assert again.status_code == 200 and again.json()["content"] == "work of alice"

    status = json.loads(labctl("hub", "status", "--json", cwd=hub["root"], check=True).stdout)
    assert status["running"] and len(status["servers"]) == 2
    again = labctl("hub", "up", "small", "--admin", "teacher", "--python", sys.executable,
                   cwd=hub["root"])
    assert again.returncode != 0 and "runs already" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    print("note: each server: 8 GiB memory, 2 CPUs, 2 GiB /dev/shm, uid 1000;"
          " start to usable Jupyter (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
