"""A lab on an engine of another machine, reached as DOCKER_HOST=ssh://HOST: the second,
rootless engine of these tests behind an sshd the test starts as the test user on
127.0.0.1 (its own host key, key-only login, and `SetEnv DOCKER_HOST` to that engine's
socket), driven through the system ssh client. Build, run and check there; the lab's
folders made there, by the engine, not here; a local --src refused with the options;
--sync copies a folder there and back."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import BASE, labctl, load_base, wait_for_docker

pytestmark = pytest.mark.engine

SMALL = f"""\
description: a small lab on another machine
base: {BASE}
pip: ["six==1.16.0"]
volumes: [data]
checks:
  - name: six-and-data
    run: "python -c 'import six; print(six.__version__)' && touch /data/checked"
"""
HOST = "gpu-box"  # the name ssh knows the other machine by (in the test's ssh config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ssh_engine(second_engine: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[dict[str, str]]:
    """The environment of a learner whose DOCKER_HOST is ssh://gpu-box."""
    sshd = Path("/usr/sbin/sshd")
    if not sshd.exists() or shutil.which("ssh") is None:
        pytest.fail("the remote-engine test needs openssh-server and openssh-client;"
                    " ./scripts/test.sh installs them")
    root = tmp_path_factory.mktemp("ssh")
    for key in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)],
                       check=True)
    shutil.copy(root / "id.pub", root / "authorized_keys")
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nAllowTcpForwarding local\n"
        f"SetEnv DOCKER_HOST={second_engine}\n")
    proc = subprocess.Popen([str(sshd), "-D", "-e", "-f", str(root / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=(root / "sshd.log").open("w"))
    (root / "ssh_config").write_text(
        f"Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n"
        f"  User {pwd.getpwuid(os.getuid()).pw_name}\n"
        f"  IdentityFile {root / 'id'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n")
    # The learner's ssh reads ~/.ssh/config; this one reads the test's (the same client).
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(
        f"#!/bin/sh\nexec {shutil.which('ssh')} -F {root / 'ssh_config'} \"$@\"\n")
    (bin_dir / "ssh").chmod(0o755)
    env = {"DOCKER_HOST": f"ssh://{HOST}", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    try:
        wait_for_docker(proc, "sshd in front of the second engine", root / "sshd.log",
                        seconds=30, env={**os.environ, **env})
        load_base(second_engine)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def owner(path: Path) -> int:
    return path.stat().st_uid


def test_build_run_check_on_an_engine_over_ssh(lab_factory, ssh_engine: dict[str, str],
                                               tmp_path: Path) -> None:
    there = tmp_path / "there"  # the lab folder on the other machine
    # That engine has no bridge network: its builds use the host's (a labctl setting).
    lab = lab_factory({"small": SMALL}, f"build_network: host\nremote_root: {there}\n")
    built = labctl("build", "small", "--json", cwd=lab, env=ssh_engine)
    assert built.returncode == 0, built.stderr[-3000:]
    assert json.loads(built.stdout)[0]["status"] == "built"
    rows = json.loads(labctl("list", "--json", cwd=lab, env=ssh_engine, check=True).stdout)
    assert {r["name"]: r["state"] for r in rows} == {"small": "current"}
    # labctl says which engine it talks to.
    doctor = labctl("doctor", "--json", cwd=lab, env=ssh_engine)
    assert f"ssh://{HOST}" in doctor.stdout

    # A run there: its folders are made there, as the learner, and none here.
    ran = labctl("run", "small", "--user", "--", "sh", "-c", "echo hello > /data/from-lab",
                 cwd=lab, env=ssh_engine)
    assert ran.returncode == 0, ran.stderr
    made = there / "data" / "from-lab"
    assert made.read_text() == "hello\n" and owner(made) == os.getuid()
    assert owner(there / "data") == os.getuid() and owner(there / "work") == os.getuid()
    assert not (lab / "data").exists() and not (lab / "work").exists()

    # A local folder does not exist there: refused, with the two ways that work.
    book = tmp_path / "book"
    book.mkdir()
    (book / "chapter.txt").write_text("a chapter\n")
    refused = labctl("run", "small", "--src", str(book), "--", "true", cwd=lab,
                     env=ssh_engine)
    assert refused.returncode != 0
    assert "remote:" in refused.stderr and "--sync" in refused.stderr
    # A folder of that machine is mounted as it is.
    remote_book = tmp_path / "remote-book"
    remote_book.mkdir()
    (remote_book / "there.txt").write_text("on the server\n")
    # Readable by the image's own user (this run is not --user), whatever the umask.
    remote_book.chmod(0o755)
    (remote_book / "there.txt").chmod(0o644)
    seen = labctl("run", "small", "--src", f"remote:{remote_book}", "--", "cat", "there.txt",
                  cwd=lab, env=ssh_engine)
    assert seen.returncode == 0 and "on the server" in seen.stdout, seen.stderr

    # --sync: copied there, changed there, and back here as the learner's.
    synced = labctl("run", "small", "--user", "--src", str(book), "--sync", "--", "sh", "-c",
                    "cat chapter.txt && echo an answer > answer.txt", cwd=lab, env=ssh_engine)
    assert synced.returncode == 0, synced.stderr
    assert "a chapter" in synced.stdout
    answer = book / "answer.txt"
    assert answer.read_text() == "an answer\n" and owner(answer) == os.getuid()
    assert (book / "chapter.txt").read_text() == "a chapter\n"
    volumes = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True,
                             env={**os.environ, **ssh_engine}, check=True).stdout
    assert "labctl-sync" not in volumes  # nothing left behind there

    # A detached lab's folder comes back when `labctl stop` ends it.
    started = labctl("run", "small", "-d", "--json", "--src", str(book), "--sync", "--",
                     "sh", "-c", "echo later > later.txt && sleep 600", cwd=lab, env=ssh_engine)
    assert started.returncode == 0, started.stderr
    name = json.loads(started.stdout)["container"]
    deadline = time.monotonic() + 30
    while "later" not in (seen := subprocess.run(
            ["docker", "exec", name, "cat", "later.txt"], capture_output=True,
            text=True, env={**os.environ, **ssh_engine})).stdout:
        assert time.monotonic() < deadline, seen.stderr + labctl(
            "logs", name, cwd=lab, env=ssh_engine).stdout
        time.sleep(0.5)
    stopped = labctl("stop", name, cwd=lab, env=ssh_engine)
    assert stopped.returncode == 0, stopped.stderr
    assert (book / "later.txt").read_text() == "later\n"

    checked = labctl("check", "small", "--json", cwd=lab, env=ssh_engine)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)[0]["status"] == "pass"
    assert (there / "data" / "checked").exists() and not (lab / "data").exists()
    # What the test built there goes with that engine, at the end of the module.



def test_the_jupyter_port_is_reached_through_an_ssh_forward(ssh_engine: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """labctl's `ssh -L` to a port that listens on the other machine's loopback only."""
    from labctl.runtime.remote import Ssh, forward

    server = subprocess.Popen(["python3", "-m", "http.server", "--bind", "127.0.0.1",
                               str(port := _free_port())], cwd=Path(__file__).parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monkeypatch.setenv("PATH", ssh_engine["PATH"])
    try:
        with forward(Ssh(HOST), port) as local:
            assert local != port
            deadline = time.monotonic() + 20
            while True:
                try:
                    got = requests.get(f"http://127.0.0.1:{local}/conftest.py", timeout=5)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.3)
            assert got.status_code == 200 and "def labctl(" in got.text
        with pytest.raises(requests.ConnectionError):  # the forward ends with the block
            requests.get(f"http://127.0.0.1:{local}/", timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=10)
