"""Shared fixtures: a real Docker engine, temporary labs, the labctl CLI."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BASE = os.environ.get("LABCTL_TEST_BASE", "debian:bookworm")
# Every image a test builds carries this prefix, so the tests clean up only their own.
TAG_PREFIX = f"labctl-test-{uuid.uuid4().hex[:6]}/"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also build and check every lab")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (./scripts/test.sh --slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def docker_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    import docker

    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except Exception as e:  # the test command starts an engine; say so if it is missing
        pytest.fail(f"no Docker engine answers ({e}); run ./scripts/test.sh, which starts one")
    if not client.images.list(name=BASE.split(":")[0]):
        pytest.fail(f"base image {BASE} missing; run `labctl base bootstrap {BASE}`")
    yield client
    for img in client.images.list():
        for tag in img.tags:
            if tag.startswith(TAG_PREFIX):
                with contextlib.suppress(Exception):
                    client.images.remove(tag, force=True)
    # A rebuilt test tag leaves its old image untagged: remove those of this session's labs.
    base = str(tmp_path_factory.getbasetemp().parent)
    for img in client.images.list(filters={"dangling": True}):
        if (img.labels or {}).get("org.labctl.lab", "").startswith(base):
            with contextlib.suppress(Exception):
                client.images.remove(img.id, force=True)


@contextlib.contextmanager
def raises_id(error_id: str) -> Iterator[pytest.ExceptionInfo]:
    """A LabError with this id (tables/error_ids.yaml): tests assert ids, not wording."""
    from labctl.errors import LabError

    with pytest.raises(LabError) as info:
        yield info
    assert info.value.id == error_id, f"{info.value.id}: {info.value}"


def write_lab(root: Path, specs: dict[str, str], settings: str = "") -> Path:
    """A lab folder with the shipped volumes.yaml, the given specs and test settings."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "volumes.yaml").write_text((REPO / "volumes.yaml").read_text())
    (root / "images").mkdir(exist_ok=True)
    for name, text in specs.items():
        (root / "images" / f"{name}.yaml").write_text(text)
    (root / "labctl.yaml").write_text(f"tag_prefix: {TAG_PREFIX}\n{settings}")
    return root


@pytest.fixture
def lab_factory(tmp_path: Path):
    def make(specs: dict[str, str], settings: str = "", name: str = "lab") -> Path:
        return write_lab(tmp_path / name, specs, settings)

    return make


def labctl(*args: str, cwd: Path | None = None, check: bool = False, timeout: int = 1800,
           env: dict[str, str] | None = None, input: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a learner would."""
    proc = subprocess.run(
        [sys.executable, "-m", "labctl", *args], cwd=cwd, text=True, capture_output=True,
        timeout=timeout, env={**os.environ, **(env or {})}, input=input,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"labctl {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of a package that no index holds."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


# --- a second engine --------------------------------------------------------------
def wait_for_docker(proc: subprocess.Popen, what: str, log: Path, *args: str,
                    seconds: float = 90, env: dict[str, str] | None = None) -> None:
    """Until `docker ARGS info` answers (the engine ``proc`` started, or what stands in
    front of it); the test fails with the log's tail when ``proc`` ends or time runs out."""
    deadline = time.monotonic() + seconds
    while subprocess.run(["docker", *args, "info"], capture_output=True, env=env).returncode:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer:\n" + log.read_text()[-3000:])
        time.sleep(0.5)


def load_base(host: str) -> None:
    """The base image from this machine's engine into another (no registry here), as a
    learner's `docker pull` there would bring it."""
    save = subprocess.Popen(["docker", "save", BASE], stdout=subprocess.PIPE)
    subprocess.run(["docker", "-H", host, "load", "-q"], stdin=save.stdout, check=True,
                   capture_output=True)
    save.wait()


def stop_group(p: subprocess.Popen) -> None:
    """SIGTERM to its process group, SIGKILL after a minute."""
    if p.poll() is not None:
        return
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)


ROOTLESS = [Path("/usr/share/docker.io/contrib/dockerd-rootless.sh"),
            Path("/usr/bin/dockerd-rootless.sh")]

@pytest.fixture(scope="module")
def second_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DOCKER_HOST of a rootless engine started for this module and removed after it."""
    script = next((p for p in ROOTLESS if p.exists()), None)
    missing = [t for t in ("rootlesskit", "newuidmap", "dockerd") if not shutil.which(t)]
    if script is None or missing:
        pytest.fail(f"the second engine needs {missing or 'dockerd-rootless.sh'}; "
                    "./scripts/test.sh installs them (rootlesskit, uidmap)")
    root = tmp_path_factory.mktemp("e2")
    for d in ("run", "data", "exec"):
        (root / d).mkdir()
    sock = root / "run" / "docker.sock"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(root / "run"), "HOME": str(root),
           "DOCKERD_ROOTLESS_ROOTLESSKIT_NET": "host",  # its containers get no network
           "DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER": "none"}
    env.pop("DOCKER_HOST", None)
    log = (root / "dockerd.log").open("w")
    proc = subprocess.Popen(
        [str(script), "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "-H", f"unix://{sock}", "--pidfile", str(root / "run" / "docker.pid"),
         "--bridge", "none", "--iptables=false", "--ip-masq=false", "--userland-proxy=false"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    host = f"unix://{sock}"
    try:
        wait_for_docker(proc, "the second engine", root / "dockerd.log", "-H", host)
        yield host
    finally:
        stop_group(proc)
        # its layers belong to the user's subordinate ids: remove them from its namespace
        subprocess.run(["rootlesskit", "rm", "-rf", str(root / "data"), str(root / "exec")],
                       capture_output=True, timeout=300)


def tar_bytes(files: list[tuple[str, bytes]], links: list[tuple[str, str]] = (),
              format: int = tarfile.DEFAULT_FORMAT) -> bytes:
    """A tar of these files and symlinks (name, target), as an engine or a save sends."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            tar.addfile(link)
    return out.getvalue()
