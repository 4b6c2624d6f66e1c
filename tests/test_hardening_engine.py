"""What must never happen, tried against the real engine as a careless or hostile user
would: a lab that runs as root by accident, re-owns what is not the learner's, leaks a
secret into an image, publishes Jupyter on every interface, or lets one user reach
another's lab."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BASE, REPO, TAG_PREFIX, labctl, make_wheel, write_lab

from labctl import labels

pytestmark = pytest.mark.engine

TINY = f"base: {BASE}\npip: ['six==1.16.0']\nvolumes: [data]\n"
PATHY = TINY + "env:\n  PATH: /opt/extra/bin:$PATH\n"
JUP = f"base: {BASE}\npip: ['jupyterlab>=4.4,<5']\njupyter: true\nvolumes: [data]\n"
QUICK = TINY + "checks:\n  - {name: quick, run: 'sleep 3; id -u'}\n"


@pytest.fixture(scope="module")
def lab(docker_client, tmp_path_factory) -> Path:
    root = write_lab(tmp_path_factory.mktemp("hard") / "lab",
                     {"tiny": TINY, "pathy": PATHY, "jup": JUP, "quick": QUICK})
    labctl("build", "tiny", "pathy", "jup", "quick", cwd=root, check=True)
    return root


def _ours(lab: Path) -> list[dict]:
    return [r for r in json.loads(labctl("ps", "--json", "--all", cwd=lab, check=True).stdout)
            if r["lab"] == str(lab)]


def _stop_ours(lab: Path) -> None:
    names = [r["name"] for r in _ours(lab)]
    if names:
        labctl("stop", *names, cwd=lab)


# --- 1. --user never runs the lab as root by accident ---------------------------------------


def test_a_spec_path_keeps_the_lab_the_learners(lab: Path) -> None:
    proc = labctl("run", "pathy", "--user", "--", "bash", "-c",
                  "echo $PATH; id -u; touch /workspace/work/pathy-file", cwd=lab)
    assert proc.returncode == 0, proc.stderr
    path, uid = proc.stdout.split()[:2]
    assert path.startswith("/opt/extra/bin:/opt/venv/bin:") and uid == str(os.getuid())
    assert (lab / "work" / "pathy-file").stat().st_uid == os.getuid()


@pytest.mark.parametrize("env", [
    {"PATH": "/nowhere"},  # the tools the entrypoint needs are not on PATH
    {"PATH": ""},
])
def test_the_entrypoint_calls_its_tools_by_absolute_path(docker_client, env) -> None:
    out = docker_client.containers.run(
        f"{TAG_PREFIX}tiny:latest", ["/usr/bin/id", "-u"], remove=True,
        environment={"LABCTL_UID": "4321", "LABCTL_GID": "4321", **env}).decode().split()
    assert out == ["4321"]


def test_the_entrypoint_stops_when_it_cannot_establish_the_user(docker_client) -> None:
    import docker.errors

    with pytest.raises(docker.errors.ContainerError) as info:
        docker_client.containers.run(f"{TAG_PREFIX}tiny:latest", ["/usr/bin/id", "-u"],
                                     remove=True, environment={"LABCTL_UID": "0; id"})
    assert info.value.exit_status == 70
    assert b"not starting the lab" in (info.value.stderr or b"")


# --- 2. the entrypoint re-owns only what is inside the image ---------------------------------


def test_the_entrypoint_never_reowns_the_learners_mounts(docker_client, tmp_path: Path
                                                         ) -> None:
    import docker.types

    shared = tmp_path / "shared"
    (shared / "sub").mkdir(parents=True)
    (shared / "sub" / "notes.txt").write_text("mine")
    home_mount = tmp_path / "home-mount"
    home_mount.mkdir()
    before = {p: p.stat().st_uid for p in (shared / "sub", shared / "sub" / "notes.txt",
                                             home_mount)}
    docker_client.containers.run(
        f"{TAG_PREFIX}tiny:latest", ["true"], remove=True,
        environment={"LABCTL_UID": "4321", "LABCTL_GID": "4321",
                     "LABCTL_WORKSPACE": "/data/sub"},  # a workspace inside a mount
        mounts=[docker.types.Mount("/data", str(shared), type="bind"),
                docker.types.Mount("/home/lab/mnt", str(home_mount), type="bind")])
    assert {p: p.stat().st_uid for p in before} == before


# --- 3. no credential in any layer, the config or the history --------------------------------


@pytest.mark.parametrize("builder", ["classic", "buildkit"])
def test_index_credentials_are_in_no_layer_history_or_config(docker_client, lab: Path,
                                                             tmp_path: Path, builder: str
                                                             ) -> None:
    import docker.types

    from labctl.image.buildkit import find_cli

    if builder == "buildkit" and find_cli() is None:
        pytest.skip("no docker CLI here runs BuildKit builds")
    secret = f"s3cret-{builder}-{TAG_PREFIX.strip('/')}"
    wheels = tmp_path / "index"
    wheels.mkdir()
    make_wheel(wheels, "labctl_secret_probe", "1.0")
    index = docker_client.containers.run(
        f"{TAG_PREFIX}tiny:latest", ["python3", "/srv/auth_index.py", "8080", "labctl",
                                     secret, "/srv/wheels"],
        entrypoint=[], detach=True, labels={f"{labels.PREFIX}test": "1"},
        mounts=[docker.types.Mount("/srv/auth_index.py",
                                   str(REPO / "tests/fixtures/auth_index.py"), type="bind",
                                   read_only=True),
                docker.types.Mount("/srv/wheels", str(wheels), type="bind", read_only=True)])
    try:
        deadline = time.monotonic() + 30
        while b"Serving HTTP" not in index.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        index.reload()
        ip = index.attrs["NetworkSettings"]["IPAddress"]
        spec = (f"base: {BASE}\npip: [labctl-secret-probe]\n"
                f"extra_index_urls: ['http://labctl:{secret}@{ip}:8080/simple']\n")
        (lab / "images" / "secret.yaml").write_text(spec)
        proc = labctl("build", "secret", "--progress", "plain", "--builder", builder, cwd=lab)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        tag = f"{TAG_PREFIX}secret:latest"
        # The index wanted the password: the package came from it, so it reached uv.
        out = docker_client.containers.run(
            tag, ["bash", "-c", "python -c 'import labctl_secret_probe as p; print(p.VERSION)';"
                  " find / -xdev -name 'labctl.netrc' | wc -l"], remove=True).decode()
        assert out.split() == ["1.0", "0"], out
        history = subprocess.run(["docker", "history", "--no-trunc", tag], capture_output=True,
                                 text=True, check=True).stdout
        inspect = subprocess.run(["docker", "inspect", tag], capture_output=True, text=True,
                                 check=True).stdout
        assert secret not in history and secret not in inspect
        assert secret not in proc.stdout + proc.stderr
        run = labctl("run", "secret", "--", "bash", "-c", "env", cwd=lab)
        assert run.returncode == 0 and secret not in run.stdout
    finally:
        index.remove(force=True)
        (lab / "images" / "secret.yaml").unlink(missing_ok=True)


# --- 4. loopback by default, literal addresses only --------------------------------------


def test_bind_localhost_publishes_on_the_loopback_only(docker_client, lab: Path) -> None:
    (lab / "labctl.yaml").write_text(f"tag_prefix: {TAG_PREFIX}\nbind: localhost\n")
    try:
        proc = labctl("run", "jup", "-d", "--json", cwd=lab)
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        c = docker_client.containers.get(info["container"])
        addresses = {b["HostIp"] for b in c.attrs["HostConfig"]["PortBindings"]["8888/tcp"]}
        assert addresses <= {"127.0.0.1", "::1"} and "127.0.0.1" in addresses
        assert info["url"].startswith("http://127.0.0.1:") and info["gpu"] == "cpu"
        # The token is in a file of yours, not in the container's configuration.
        token = Path(info["token_file"]).read_text()
        assert token in info["url"] and oct(Path(info["token_file"]).parent.stat().st_mode
                                            )[-3:] == "700"
        assert token not in json.dumps(c.attrs["Config"])
        assert token not in c.labels.get(labels.URL, "")
    finally:
        (lab / "labctl.yaml").write_text(f"tag_prefix: {TAG_PREFIX}\n")
        _stop_ours(lab)
    assert not Path(info["token_file"]).exists()  # stop removed it


@pytest.mark.parametrize("bind", ["", "my-laptop"])
def test_a_bind_that_is_not_an_address_is_refused(lab: Path, bind: str) -> None:
    proc = labctl("run", "jup", "-d", "--bind", bind, cwd=lab)
    if proc.returncode == 0:
        _stop_ours(lab)
    assert proc.returncode == 1 and "127.0.0.1" in proc.stderr and "Traceback" not in proc.stderr


# --- 5. a user's commands reach only their own labs ----------------------------------------


def test_another_users_lab_is_out_of_reach(docker_client, lab: Path) -> None:
    other = os.getuid() + 1
    theirs = docker_client.containers.run(
        f"{TAG_PREFIX}tiny:latest", ["sleep", "120"], detach=True, name=f"labctl-tiny-{other}",
        labels={labels.RUN: "0.1.0", labels.SPEC: "tiny", labels.LAB: str(lab),
                labels.OWNER: str(other), labels.URL: "http://127.0.0.1:1/lab"})
    mine = labctl("run", "tiny", "-d", "--", "sleep", "120", cwd=lab)
    try:
        assert mine.returncode == 0, mine.stderr
        assert theirs.name not in {r["name"] for r in _ours(lab)}
        for args in (["stop", theirs.name], ["logs", theirs.name], ["shell", theirs.name]):
            proc = labctl(*args, cwd=lab)
            assert proc.returncode == 1 and "another user" in proc.stderr, (args, proc.stderr)
        stopped = json.loads(labctl("stop", "--all", "--json", cwd=lab, check=True).stdout)
        assert theirs.name not in stopped["stopped"] and stopped["stopped"]
        theirs.reload()
        assert theirs.status == "running"
    finally:
        theirs.remove(force=True)
        _stop_ours(lab)


# --- a lab whose labctl was killed is reported, not left forever ----------------------------


def test_a_lab_left_by_a_killed_labctl_is_reported(docker_client, lab: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "run", "tiny", "--user", "--",
                             "sleep", "300"], cwd=lab, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [r for r in _ours(lab)
                                                   if r["status"] == "running"]:
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = [r["name"] for r in _ours(lab)]
        assert left, "the lab should still run: nothing removed it"
        ps = labctl("ps", cwd=lab)
        assert f"{left[0]} is still running" in ps.stderr and f"labctl stop {left[0]}" in ps.stderr
    finally:
        _stop_ours(lab)
    assert _ours(lab) == []


# --- the house: --keep, names taken at once, the same image from every shell ----------------


def test_a_kept_lab_can_still_be_read_and_stopped(lab: Path) -> None:
    proc = labctl("run", "tiny", "--keep", "--", "echo", "kept-output", cwd=lab)
    assert proc.returncode == 0, proc.stderr
    kept = [r for r in _ours(lab) if r["status"] == "exited"]
    assert kept
    logs = labctl("logs", "tiny", cwd=lab)
    assert logs.returncode == 0 and "kept-output" in logs.stdout
    assert labctl("stop", "tiny", cwd=lab).returncode == 0
    assert _ours(lab) == []


def test_labs_and_checks_started_at_once_get_names_of_their_own(lab: Path) -> None:
    env = {**os.environ}
    runs = [subprocess.Popen([sys.executable, "-m", "labctl", "run", "tiny", "-d", "--json",
                              "--", "sleep", "60"], cwd=lab, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    checks = [subprocess.Popen([sys.executable, "-m", "labctl", "check", "quick", "--json"],
                               cwd=lab, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=300) for p in runs + checks]
        assert all(p.returncode == 0 for p in runs + checks), [o[1][-500:] for o in outs]
        names = {json.loads(o[0])["container"] for o in outs[:4]}
        assert len(names) == 4
        assert all(json.loads(o[0])[0]["status"] == "pass" for o in outs[4:])
    finally:
        _stop_ours(lab)


def test_the_image_is_the_same_from_a_sudo_reset_shell(lab: Path) -> None:
    """sudo resets the environment (no PIP_CERT, SSL_CERT_FILE, proxies): the image must be
    the same one, current, and a build from there must reach the index."""
    reset = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
             "LANG": "C.UTF-8"}
    full = {r["name"]: r["hash"] for r in json.loads(
        labctl("list", "--json", cwd=lab, check=True).stdout)}
    bare = subprocess.run([sys.executable, "-m", "labctl", "list", "--json"], cwd=lab,
                          env=reset, capture_output=True, text=True, check=True)
    assert {r["name"]: r["hash"] for r in json.loads(bare.stdout)} == full
    again = subprocess.run([sys.executable, "-m", "labctl", "build", "tiny"], cwd=lab,
                           env=reset, capture_output=True, text=True)
    assert again.returncode == 0 and "is current" in again.stdout, again.stderr
    # And a new layer built from that shell reaches PyPI (through this machine's proxy,
    # whose CA the host's store holds).
    unique = f"six==1.16.0; platform_system != 'labctl-{TAG_PREFIX.strip('/')}-sudo'"
    (lab / "images" / "fresh.yaml").write_text(f'base: {BASE}\npip: ["{unique}"]\n')
    try:
        built = subprocess.run([sys.executable, "-m", "labctl", "build", "fresh"], cwd=lab,
                               env=reset, capture_output=True, text=True)
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr
    finally:
        (lab / "images" / "fresh.yaml").unlink()
