"""A second Docker host made by the test: a network namespace ("gpu-box") with its own
rootful dockerd and an sshd from Debian's packages, reachable only on the test's veth
address, where the learner logs in as another user (labctl-remote). The learner
(labctl-test) sets DOCKER_HOST=ssh://labctl-remote@ADDRESS and builds, runs and checks a
small Jupyter lab there: its folders are made there as labctl-remote (in a home the
learner cannot write, so nothing here could have made them), a local --src is refused
with the options, --sync round-trips a file, and Jupyter answers through labctl's ssh -L
with the token and refuses without it.

It needs root to make the namespace: `./scripts/test.sh` runs this module as root after
the rest, and runs labctl itself as the learner."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from conftest import BASE, TAG_PREFIX
from netns_host import netns_engine, sh

pytestmark = [pytest.mark.engine, pytest.mark.root]

LEARNER, REMOTE_USER = "labctl-test", "labctl-remote"
SMALL = f"""\
description: a small Jupyter lab on a GPU server
base: {BASE}
pip: ["six==1.16.0", "jupyterlab"]
jupyter: {{enabled: true, port: 8888}}
volumes: [data]
checks:
  - name: six-and-data
    run: "python -c 'import six' && touch /data/checked"
"""


@dataclass
class Box:
    address: str
    env: dict[str, str]  # the learner's environment: DOCKER_HOST, PATH with its ssh config
    python: str  # the learner's labctl
    remote_home: Path
    socket: str

    def labctl(self, *args: str, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
        """labctl as the learner (runuser), with DOCKER_HOST=ssh://... to the box."""
        env = [f"{k}={v}" for k, v in self.env.items()]
        return subprocess.run(
            ["runuser", "-u", LEARNER, "--", "env", *env, self.python, "-m", "labctl", *args],
            cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        sh("useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name)
        return pwd.getpwnam(name)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    if os.geteuid() != 0:
        pytest.skip("makes a network namespace: ./scripts/test.sh runs it as root")
    python = os.environ.get("LABCTL_LEARNER_PYTHON")
    if not python or not Path("/usr/sbin/sshd").exists():
        pytest.fail("run through ./scripts/test.sh (the learner's venv, openssh-server)")
    learner, remote = _user(LEARNER), _user(REMOTE_USER)
    sh("usermod", "-p", "*", REMOTE_USER)  # no password, not locked: key-only logins
    keys = tmp_path_factory.mktemp("box-keys")
    with netns_engine("labctl-box", keys, ("--group", REMOTE_USER)) as host:
        state, address, socket = host.state, host.address, host.socket
        client = Path(f"/var/tmp/labctl-test/box-{host.ns}")  # the learner's ssh config
        client.mkdir(parents=True)
        try:
            # sshd on the box's veth address only, key logins of the remote user only.
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host_key"))
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client / "id"))
            # sshd reads it as the user: in the box's folder, not root's pytest folder
            (state / "authorized_keys").write_text((client / "id.pub").read_text())
            (state / "authorized_keys").chmod(0o644)
            (keys / "sshd_config").write_text(
                f"ListenAddress {address}\nHostKey {keys / 'host_key'}\n"
                f"AuthorizedKeysFile {state / 'authorized_keys'}\n"
                f"PidFile {state / 'sshd.pid'}\nUsePAM no\nStrictModes no\n"
                f"PasswordAuthentication no\nAllowUsers {REMOTE_USER}\n"
                f"KbdInteractiveAuthentication no\nAllowTcpForwarding local\n"
                f"SetEnv DOCKER_HOST={socket}\n")
            Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation folder
            host.start("/usr/sbin/sshd", "-D", "-e", "-f", str(keys / "sshd_config"),
                       log=keys / "sshd.log")
            (client / "ssh_config").write_text(
                f"Host {address}\n  IdentityFile {client / 'id'}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {client / 'known_hosts'}\n"
                "  StrictHostKeyChecking accept-new\n  BatchMode yes\n")
            (client / "bin").mkdir()
            (client / "bin" / "ssh").write_text(  # the learner's ~/.ssh/config, in effect
                f"#!/bin/sh\nexec {shutil.which('ssh')} -F {client / 'ssh_config'} \"$@\"\n")
            (client / "bin" / "ssh").chmod(0o755)
            shutil.chown(client, learner.pw_uid, learner.pw_gid)
            for p in client.rglob("*"):
                os.chown(p, learner.pw_uid, learner.pw_gid, follow_symlinks=False)
            env = {"DOCKER_HOST": f"ssh://{REMOTE_USER}@{address}", "HOME": learner.pw_dir,
                   "PATH": f"{client / 'bin'}:{Path(python).parent}:/usr/sbin:/usr/bin:/bin"}
            b = Box(address, env, python, Path(remote.pw_dir), socket)
            deadline = time.monotonic() + 30
            while (r := subprocess.run(
                    ["runuser", "-u", LEARNER, "--", "env",
                     *[f"{k}={v}" for k, v in env.items()], "docker", "info"],
                    capture_output=True, text=True)).returncode != 0:
                if time.monotonic() > deadline:
                    pytest.fail(f"docker over ssh to the box failed: {r.stdout[-1500:]}"
                                f" {r.stderr[-1500:]}\n"
                                + (keys / "sshd.log").read_text()[-2000:])
                time.sleep(0.5)
            yield b
        finally:
            shutil.rmtree(client, ignore_errors=True)
            shutil.rmtree(Path(remote.pw_dir) / "labctl", ignore_errors=True)


@pytest.fixture
def learner_tmp() -> Iterator[Path]:
    """A folder of the learner's (pytest's own, root's, is closed to them)."""
    learner = pwd.getpwnam(LEARNER)
    path = Path(f"/var/tmp/labctl-test/box-work-{secrets.token_hex(3)}")
    path.mkdir(parents=True)
    os.chown(path, learner.pw_uid, learner.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_lab_on_a_gpu_server_over_ssh(box: Box, learner_tmp: Path) -> None:
    learner = pwd.getpwnam(LEARNER)
    remote = pwd.getpwnam(REMOTE_USER)
    tmp_path = learner_tmp
    lab = tmp_path / "lab"
    (lab / "images").mkdir(parents=True)
    (lab / "images" / "small.yaml").write_text(SMALL)
    (lab / "volumes.yaml").write_text((Path(__file__).parents[1] / "volumes.yaml").read_text())
    (lab / "labctl.yaml").write_text(f"tag_prefix: {TAG_PREFIX}\n")
    book = tmp_path / "book"
    book.mkdir()
    (book / "chapter.txt").write_text("a chapter\n")
    for p in (tmp_path, lab, *lab.rglob("*"), book, *book.rglob("*")):
        os.chown(p, learner.pw_uid, learner.pw_gid)

    built = box.labctl("build", "small", "--json", cwd=lab)
    assert built.returncode == 0, built.stderr[-3000:]
    doctor = box.labctl("doctor", "--json", cwd=lab)
    assert f"ssh://{REMOTE_USER}@{box.address}" in doctor.stdout

    # Folders there, made as the remote user in their home; none here.
    ran = box.labctl("run", "small", "--user", "--", "sh", "-c", "id -u > /data/who", cwd=lab)
    assert ran.returncode == 0, ran.stderr
    there = box.remote_home / "labctl" / "lab"
    assert (there / "data" / "who").read_text().strip() == str(remote.pw_uid)
    for made in (there / "data", there / "work", there / "data" / "who"):
        assert made.stat().st_uid == remote.pw_uid, made
    assert not (lab / "data").exists() and not (lab / "work").exists()

    refused = box.labctl("run", "small", "--src", str(book), "--", "true", cwd=lab)
    assert refused.returncode != 0 and "remote:" in refused.stderr and "--sync" in refused.stderr
    synced = box.labctl("run", "small", "--user", "--src", str(book), "--sync", "--", "sh",
                        "-c", "cat chapter.txt && echo an answer > answer.txt", cwd=lab)
    assert synced.returncode == 0 and "a chapter" in synced.stdout, synced.stderr
    answer = book / "answer.txt"
    assert answer.read_text() == "an answer\n" and answer.stat().st_uid == learner.pw_uid

    # Jupyter there, on the box's loopback; here through labctl's ssh -L, with the token.
    proc = subprocess.Popen(
        ["runuser", "-u", LEARNER, "--", "env", *[f"{k}={v}" for k, v in box.env.items()],
         box.python, "-m", "labctl", "run", "small", "--user", "--json"], cwd=lab,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        text, ready = "", {}
        for line in proc.stdout:  # printed (indented) once Jupyter answers
            text += line
            if line.startswith("}"):
                ready = json.loads(text)
                break
        assert ready.get("url"), "labctl run printed no URL"
        base, token = ready["url"].split("/lab?token=")
        assert base.startswith("http://127.0.0.1:") and not base.endswith(":8888")
        assert requests.get(f"{base}/api/status", params={"token": token},
                            timeout=10).status_code == 200
        assert requests.get(f"{base}/api/status", timeout=10).status_code == 403
        # It is the learner's lab there (owned by their login there), and ps says where.
        rows = json.loads(box.labctl("ps", "--json", cwd=lab).stdout)
        assert [(r["spec"], r["engine"]) for r in rows] == [
            ("small", f"ssh://{REMOTE_USER}@{box.address}")]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the lab goes, and the forward
        proc.wait(timeout=120)
    assert box.labctl("ps", "--json", "--all", cwd=lab).stdout.strip() == "[]"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/status", timeout=5)

    checked = box.labctl("check", "small", "--json", cwd=lab)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (there / "data" / "checked").stat().st_uid == remote.pw_uid
