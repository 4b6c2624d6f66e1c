"""`labctl run` on the real engine, as the (non-root) user who runs the tests."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import BASE, TAG_PREFIX, labctl, write_lab

pytestmark = pytest.mark.engine

TINY = f"""\
description: a shell lab for the tests
base: {BASE}
pip: ["six==1.16.0"]
volumes: [data, cache, models]
"""
JUP = f"""\
description: a Jupyter lab for the tests
base: {BASE}
pip: ["jupyterlab>=4.4,<5"]
jupyter: {{enabled: true, port: 8888}}
volumes: [data, cache, models]
"""


@pytest.fixture(scope="module")
def lab(docker_client, tmp_path_factory) -> Path:
    root = write_lab(tmp_path_factory.mktemp("run") / "lab", {"tiny": TINY, "jup": JUP,
                                                             "clash": TINY})
    labctl("build", "tiny", "jup", "clash", cwd=root, check=True)
    return root


def run(lab: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return labctl("run", *args, cwd=lab, timeout=600, **kw)


def test_user_maps_to_host_uid_gid(lab: Path) -> None:
    script = (
        "set -e; whoami; echo HOME=$HOME; id -u; id -g; "
        "touch /workspace/work/made-in-lab /data/made-in-lab; mkdir -p /models/ckpt; "
        "python -c \"import matplotlib\" 2>/dev/null || true; "
        "touch $HOME/.probe && echo home-writable; "
        "pip install --user -q --disable-pip-version-check tomli-w==1.0.0 && "
        "python -c 'import tomli_w, site; print(tomli_w.__file__.startswith(site.USER_SITE))'"
    )
    proc = run(lab, "tiny", "--user", "--", "bash", "-c", script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout.split()
    assert out[0] == "lab"
    assert "HOME=/home/lab" in out
    assert out[2:4] == [str(os.getuid()), str(os.getgid())]
    assert "home-writable" in out and out[-1] == "True"
    for p in (lab / "work" / "made-in-lab", lab / "data" / "made-in-lab", lab / "models" / "ckpt"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), p


def test_exit_code_is_the_commands(lab: Path) -> None:
    assert run(lab, "tiny", "--user", "--", "bash", "-c", "exit 7").returncode == 7


def test_without_user_runs_as_image_lab_user(lab: Path) -> None:
    proc = run(lab, "tiny", "--", "bash", "-c", "whoami; id -u")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["lab", "1000"]


def test_volume_folders_created_by_user_and_contents_kept(docker_client, lab: Path) -> None:
    (lab / "models").mkdir(exist_ok=True)
    keep = lab / "models" / "keep.txt"
    keep.write_text("learner data")
    proc = run(lab, "tiny", "--user", "--", "bash", "-c",
               "ls /models; echo $TORCH_HOME $HF_HOME")
    assert proc.returncode == 0, proc.stderr
    assert "keep.txt" in proc.stdout and "/cache/torch /cache/huggingface" in proc.stdout
    assert keep.read_text() == "learner data"
    for d in (lab / "cache", lab / "cache" / "torch", lab / "data"):
        assert d.is_dir() and d.stat().st_uid == os.getuid(), d


def test_image_user_already_has_host_uid_and_gid(docker_client, lab: Path) -> None:
    uid, gid = os.getuid(), os.getgid()
    tag = f"{TAG_PREFIX}clash:latest"
    dockerfile = (
        f"FROM {tag}\n"
        "RUN usermod -u 2345 lab && groupmod -g 2345 lab && chown -R 2345:2345 /home/lab"
        f" && groupadd -g {gid} hostgrp && useradd -m -u {uid} -g {gid} hostusr\n"
    )
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True,
                                          labels=docker_client.images.get(tag).labels)
    image.tag(tag)
    proc = run(lab, "clash", "--user", "--", "bash", "-c",
               "whoami; id -u; id -g; touch /workspace/work/clash-file; touch ~/.w && echo ok")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["lab", str(uid), str(gid), "ok"]
    st = (lab / "work" / "clash-file").stat()
    assert (st.st_uid, st.st_gid) == (uid, gid)


def test_tensorboard_through_jupyter_behind_the_token(lab: Path) -> None:
    """TensorBoard is reached through Jupyter's own address and token (jupyter-server-proxy)
    and reads the event files a run writes into the shared models folder."""
    logs = lab / "models" / "tensorboard" / "run1"
    started = run(lab, "jup", "--user", "-d", "--json")
    try:
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        tb = info["tensorboard_url"]
        assert tb and tb.startswith("http://127.0.0.1:") and "?token=" in tb, info
        base, token = tb.split("?token=")
        subprocess.run(["docker", "exec", "-u", str(os.getuid()), info["container"], "python",
                        "-c",
                        "from tensorboard.summary.writer.event_file_writer import "
                        "EventFileWriter as W; import os; "
                        "w = W(os.environ['TENSORBOARD_LOGDIR'] + '/run1'); w.flush()"],
                       check=True, timeout=120)
        assert logs.is_dir() and logs.stat().st_uid == os.getuid()
        deadline, got = time.monotonic() + 120, None
        while time.monotonic() < deadline:  # the proxy starts TensorBoard at the first visit
            got = requests.get(f"{base}data/runs", headers={"Authorization": f"token {token}"},
                               timeout=30)
            if got.status_code == 200:
                break
            time.sleep(2)
        assert got is not None and got.status_code == 200, got.text[:500] if got else None
        assert "run1" in got.json()
        refused = requests.get(f"{base}data/runs", timeout=10, allow_redirects=False)
        assert refused.status_code in (302, 403), refused.status_code
        assert "run1" not in refused.text
    finally:
        ours = [r["name"] for r in json.loads(labctl("ps", "--json", cwd=lab).stdout)
                if r["lab"] == str(lab)]
        labctl("stop", *ours, cwd=lab)


def test_root_host_user_runs_as_root(docker_client, lab: Path) -> None:
    out = docker_client.containers.run(f"{TAG_PREFIX}tiny:latest", ["bash", "-c", "whoami"],
                                       environment={"LABCTL_UID": "0"}, remove=True)
    assert out.decode().strip() == "root"


def test_jupyter_token_localhost_and_two_labs(docker_client, lab: Path) -> None:
    first = run(lab, "jup", "--user", "-d")
    second = run(lab, "jup", "--user", "-d")
    try:
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        urls = [re.search(r"(http://127\.0\.0\.1:(\d+)/lab\?token=(\w+))", p.stderr)
                for p in (first, second)]
        assert all(urls), first.stderr + second.stderr
        assert urls[0][2] != urls[1][2], "two labs must get different ports"
        for m in urls:
            base = f"http://127.0.0.1:{m[2]}"
            assert requests.get(m[1], timeout=10).status_code == 200
            ok = requests.get(f"{base}/api/status",
                              headers={"Authorization": f"token {m[3]}"}, timeout=10)
            assert ok.status_code == 200
            assert requests.get(f"{base}/api/status", timeout=10).status_code == 403
            assert requests.get(f"{base}/api/contents?token=wrong", timeout=10).status_code == 403
        ps = labctl("ps", "--json", cwd=lab, check=True).stdout
        names = re.findall(r'"name": "(labctl-jup[-\d]*)"', ps)
        assert len(set(names)) >= 2
        for name in names:
            c = docker_client.containers.get(name)
            bindings = c.attrs["HostConfig"]["PortBindings"]["8888/tcp"]
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings)
            assert not c.attrs["HostConfig"]["Privileged"]
            assert not any("docker.sock" in m["Source"] for m in c.attrs["Mounts"])
    finally:  # only the labs this test started: a learner's own labs keep running
        ours = [r["name"] for r in json.loads(labctl("ps", "--json", cwd=lab).stdout)
                if r["lab"] == str(lab)]
        labctl("stop", *ours, cwd=lab)
    left = json.loads(labctl("ps", "--json", "--all", cwd=lab, check=True).stdout)
    assert [r for r in left if r["lab"] == str(lab)] == []


def test_gpu_request_without_runtime_is_a_clear_message(docker_client, lab: Path) -> None:
    if any("nvidia" in r for r in docker_client.info().get("Runtimes", {})):
        pytest.skip("this engine has a GPU runtime")
    proc = run(lab, "tiny", "--gpus", "all", "--", "true")
    assert proc.returncode == 1
    assert "GPU runtime" in proc.stderr and "labctl doctor" in proc.stderr
    assert "Traceback" not in proc.stderr
    # And when a request does reach the engine, its refusal is translated too.
    from labctl.config.lab import load_lab
    from labctl.engine import Engine
    from labctl.errors import LabError
    from labctl.runtime.plan import RunRequest
    from labctl.runtime.run import container_spec, make_plan

    engine = Engine.connect()
    plan = make_plan(engine, load_lab(str(lab)), "tiny",
                     RunRequest(user=True, command=("true",), gpus="none"))
    plan.gpus = "runtime"
    c = engine.create_container(container_spec(plan))
    try:
        with pytest.raises(LabError) as info:
            engine.start(c)
        assert "cannot give this container a GPU" in str(info.value)
        assert "nvidia-ctk" in str(info.value)
    finally:
        engine.remove_container(c)


def test_ctrl_c_stops_and_removes_foreground_lab(docker_client, lab: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl", "run", "tiny", "--user", "--", "sleep", "300"],
        cwd=lab, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not docker_client.containers.list(
            filters={"label": "org.labctl.spec=tiny"}):
        time.sleep(0.3)
    assert docker_client.containers.list(filters={"label": "org.labctl.spec=tiny"})
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert docker_client.containers.list(all=True, filters={"label": "org.labctl.spec=tiny"}) \
        == []


def test_pip_install_works_as_the_learner_for_the_containers_life(lab: Path) -> None:
    proc = run(lab, "tiny", "--user", "--", "bash", "-c",
               "pip install -q --disable-pip-version-check tomli-w==1.0.0 && python -c"
               " 'import tomli_w, site; print(tomli_w.__file__.startswith(site.USER_SITE))'")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split()[-1] == "True"
    again = run(lab, "tiny", "--user", "--", "python", "-c", "import tomli_w")
    assert again.returncode == 1  # that container's life only: `labctl add` keeps it


def test_a_failed_download_names_the_labctl_command(lab: Path) -> None:
    code = ("import urllib.request; urllib.request.urlopen("
            "'http://d2l-data.s3-accelerate.amazonaws.com/airfoil_self_noise.dat', timeout=5)")
    proc = run(lab, "tiny", "--user", "--", "python", "-c", code)
    if proc.returncode == 0:
        pytest.skip("this machine reaches the dataset's host")
    out = proc.stdout + proc.stderr  # the lab's own output comes on stdout
    assert "labctl data get d2l-airfoil" in out, out[-2000:]
    assert "labctl data import d2l-airfoil" in out


def test_run_says_whether_the_lab_has_the_gpu(lab: Path) -> None:
    proc = run(lab, "tiny", "--user", "--", "true")
    assert proc.returncode == 0 and "tiny: CPU" in proc.stderr


def _compose() -> list[str]:
    import shutil as sh

    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    exe = sh.which("docker-compose")
    if not exe:
        pytest.fail("no Compose implementation: ./scripts/test.sh installs docker-compose")
    return [exe]


def test_compose_runs_the_lab_as_labctl_run_does(lab: Path) -> None:
    made = labctl("compose", "jup", "--json", cwd=lab)
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    compose_file, env_file = Path(info["file"]), Path(info["env_file"])
    assert oct(env_file.stat().st_mode)[-3:] == "600"
    token = env_file.read_text().split("=", 1)[1].strip()
    assert token not in compose_file.read_text()  # the token lives in the env file only
    check = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                            "vendor.compose-spec", str(compose_file)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    import yaml

    svc = yaml.safe_load(compose_file.read_text())["services"]["jup"]
    port = int(svc["ports"][0].split(":")[1])
    assert svc["ports"][0].startswith("127.0.0.1:") and svc["shm_size"] == "2g"
    project = f"labctl-test-{os.getpid()}"
    compose = [*_compose(), "-p", project, "-f", str(compose_file)]
    try:
        up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True,
                            timeout=300, cwd=lab)
        assert up.returncode == 0, up.stdout + up.stderr
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/api", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        ok = requests.get(f"{base}/api/status", headers={"Authorization": f"token {token}"},
                          timeout=10)
        assert ok.status_code == 200
        assert requests.get(f"{base}/api/status", timeout=10).status_code == 403
        put = requests.put(f"{base}/api/contents/work/from-compose.txt", json={
            "type": "file", "format": "text", "content": "x"},
            headers={"Authorization": f"token {token}"}, timeout=10)
        assert put.status_code in (200, 201), put.text
        st = (lab / "work" / "from-compose.txt").stat()
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    finally:
        subprocess.run([*compose, "down", "-t", "2"], capture_output=True, timeout=120,
                       cwd=lab)
