"""The second hardening round, against the real engine: whatever a spec's steps or an
image's maker did, a lab started with --user runs as the learner or does not start, and
a Ctrl-C with the output in a pipe leaves no lab behind."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BASE, REPO, TAG_PREFIX, labctl, write_lab

from labctl import labels

pytestmark = pytest.mark.engine

TINY = f"base: {BASE}\npip: ['six==1.16.0']\nvolumes: [data]\n"
# A prepare step, run as root at build time, that swaps the entrypoint for one that
# never drops root (what a hostile classmate's spec would do).
EVIL = TINY + "prepare: [prepare/evil.sh]\n"
SWAP = "printf '#!/bin/sh\\nexec \"$@\"\\n' > /usr/local/bin/labctl-entrypoint\n"


@pytest.fixture(scope="module")
def lab(docker_client, tmp_path_factory) -> Path:
    root = write_lab(tmp_path_factory.mktemp("hard2") / "lab", {"tiny": TINY, "evil": EVIL})
    (root / "images" / "prepare").mkdir()
    (root / "images" / "prepare" / "evil.sh").write_text(SWAP)
    labctl("build", "tiny", "evil", cwd=root, check=True)
    return root


as_learner = pytest.mark.skipif(os.geteuid() == 0, reason="as root the lab runs as root:"
                                " these are about a learner's uid (CI runs them as one)")


def _containers(docker_client, lab: Path) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"{labels.LAB}={lab}"})


@as_learner
def test_a_prepare_step_cannot_replace_the_entrypoint(lab: Path) -> None:
    """The entrypoint that drops root is installed after every step of the spec's."""
    proc = labctl("run", "evil", "--user", "--", "id", "-u", cwd=lab)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == str(os.getuid())


@as_learner
def test_an_image_with_another_entrypoint_does_not_start(docker_client, lab: Path) -> None:
    """Fail closed: an image whose entrypoint is not labctl's (rebuilt by someone else and
    tagged as the lab's, as a bundle's image could be) is refused before it starts."""
    tag = f"{TAG_PREFIX}tiny:latest"
    good = docker_client.images.get(tag)
    dockerfile = f"FROM {good.id}\nRUN {SWAP.strip()}\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    try:
        proc = labctl("run", "tiny", "--user", "--", "id", "-u", cwd=lab)
        assert proc.returncode != 0
        assert "does not start through this labctl's entrypoint" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stdout.strip() != "0"
        assert _containers(docker_client, lab) == []
    finally:
        bad = docker_client.images.get(tag)
        good.tag(tag)  # the good image gets its name back; the swapped one goes
        docker_client.images.remove(bad.id, force=True)


def test_ctrl_c_with_the_output_in_a_closed_pipe_leaves_no_lab(docker_client, lab: Path
                                                               ) -> None:
    """`labctl run ... | tee log`, then Ctrl-C: tee ends first, labctl's clean-up meets a
    closed pipe, and the lab's container must still go."""
    reader, writer = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl", "run", "tiny", "--",
         "bash", "-c", "trap '' TERM; while true; do echo tick; sleep 0.2; done"],
        cwd=lab, stdout=writer, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(writer)
    try:
        deadline = time.monotonic() + 120
        with os.fdopen(reader, "rb") as out:
            while b"tick" not in out.read1(4096):
                assert time.monotonic() < deadline, "the lab never printed"
        # the pipe's reader is gone (closed above), as tee is after its Ctrl-C; the
        # learner presses Ctrl-C again and again while labctl cleans up
        end = time.monotonic() + 4
        while proc.poll() is None and time.monotonic() < end:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err.decode(), err.decode()
        assert _containers(docker_client, lab) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in _containers(docker_client, lab):
            c.remove(force=True)


def test_stop_keeps_a_host_file_a_container_mounts_at_the_token_path(
        docker_client, lab: Path, tmp_path: Path) -> None:
    """A lab container whose token mount points at a learner's file (the engine's word,
    not labctl's): `labctl stop` removes the container and never the file."""
    import docker.errors
    import docker.types

    from labctl.runtime.plan import TOKEN_IN_CONTAINER

    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    c = docker_client.containers.run(
        f"{TAG_PREFIX}tiny:latest", ["sleep", "60"], detach=True,
        labels={labels.LAB: str(lab), labels.RUN: "1", labels.SPEC: "tiny",
                labels.OWNER: str(os.getuid())},
        mounts=[docker.types.Mount(TOKEN_IN_CONTAINER, str(precious), type="bind",
                                   read_only=True)])
    try:
        proc = labctl("stop", c.name, cwd=lab)
        assert proc.returncode == 0, proc.stderr
        assert precious.read_text() == "mine"
        assert _containers(docker_client, lab) == []
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def test_the_readme_names_every_promise_of_this_file() -> None:
    """The README's security table lists these promises with this file's name."""
    text = (REPO / "README.md").read_text()
    assert "tests/test_hardening2_engine.py" in text
