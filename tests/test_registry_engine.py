"""`labctl push` to a real registry the test starts on 127.0.0.1 (Debian's docker-registry,
with a password), and the same lab on a second engine: `labctl build` pulls the pushed
image of that very spec instead of building it, and it checks there."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from conftest import BASE, labctl, write_lab

pytestmark = pytest.mark.engine

USER, PASSWORD = "teacher", "s3cret-registry-pw"
SMALL = f"""\
description: a small lab from the registry
base: {BASE}
pip: ["six==1.16.0"]
volumes: [data]
checks:
  - name: six
    run: "python -c 'import six; print(six.__version__)'"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.fail("the registry test needs Debian's docker-registry; ./scripts/test.sh"
                    " installs it")

    root = tmp_path_factory.mktemp("registry")
    (root / "htpasswd").write_text(
        f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n")
    port = free_port()
    (root / "config.yml").write_text(
        f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: labctl-test, path: {root / 'htpasswd'}}}}}\n")
    proc = subprocess.Popen([exe, "serve", str(root / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 401:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the registry did not start")
            time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def docker_config(folder: Path, registry: str) -> dict[str, str]:
    """A docker config with the registry's login, as `docker login` writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(folder)}


def test_push_then_build_elsewhere_pulls_the_same_spec(lab_factory, registry: str,
                                                       second_engine: str,
                                                       tmp_path: Path) -> None:
    settings = f"registry: {registry}/class\n"
    lab = lab_factory({"small": SMALL}, settings)
    login = docker_config(tmp_path / "docker", registry)
    try:
        pushed_then_pulled(lab, registry, second_engine, tmp_path, settings, login)
    finally:  # push tags the registry's name on this engine; the test leaves nothing tagged
        subprocess.run(["docker", "rmi", f"{registry}/class/small:latest"],
                       capture_output=True, check=False)


def pushed_then_pulled(lab: Path, registry: str, second_engine: str, tmp_path: Path,
                       settings: str, login: dict[str, str]) -> None:
    labctl("build", "small", cwd=lab, check=True)
    pushed = labctl("push", "small", "--json", cwd=lab, env=login)
    assert pushed.returncode == 0, pushed.stderr
    row = json.loads(pushed.stdout)[0]
    assert row["ref"] == f"{registry}/class/small:latest" and row["digest"].startswith("sha256:")
    assert PASSWORD not in pushed.stdout + pushed.stderr
    tags = requests.get(f"http://{registry}/v2/class/small/tags/list", auth=(USER, PASSWORD),
                        timeout=10).json()
    assert tags["tags"] == ["latest"]
    # Without the login the registry refuses, and labctl says how to log in.
    refused = labctl("push", "small", cwd=lab, env={"DOCKER_CONFIG": str(tmp_path / "none")})
    assert refused.returncode != 0 and "docker login" in refused.stderr

    # The same lab folder on another engine: build pulls instead of building.
    there = write_lab(tmp_path / "there", {"small": SMALL}, settings)
    e2 = {"DOCKER_HOST": second_engine, **login}
    built = labctl("build", "small", "--json", cwd=there, env=e2)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)[0]["status"] == "pulled"
    rows = json.loads(labctl("list", "--json", cwd=there, env=e2, check=True).stdout)
    assert {r["name"]: r["state"] for r in rows} == {"small": "current"}
    checked = labctl("check", "small", "--json", cwd=there, env=e2)
    assert checked.returncode == 0 and json.loads(checked.stdout)[0]["status"] == "pass"
    # A changed spec is not the registry's image: it is built, not pulled.
    changed = write_lab(tmp_path / "changed", {"small": SMALL.replace("six==1.16.0",
                                                                      "six==1.17.0")}, settings)
    rebuilt = labctl("build", "small", "--json", cwd=changed, env=login)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)[0]["status"] == "built"
