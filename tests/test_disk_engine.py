"""Disk use against a real engine of the test's own (its images, containers and build
cache are only this module's, so the engine's own totals can be compared, and trimming
the build cache touches no one else's): `labctl df` figures against the engine's layer
sizes, `labctl prune` removing only what it may, the build cache kept to a budget, and a
build refused up front on a small disk with the previous image kept."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BASE, TAG_PREFIX, labctl, load_base, stop_group, wait_for_docker, write_lab

pytestmark = pytest.mark.engine

SETTINGS = "build_network: host\n"  # the private engine has no bridge
A = f"base: {BASE}\npip: ['six==1.16.0']\nvolumes: [data]\n"
B = A + "extras: ['tomli-w==1.0.0']\n"
MB = 1000**2
BRIDGE = "labctl-t0"  # the root test engine's own bridge


@pytest.fixture(scope="module")
def engine_host(request: pytest.FixtureRequest, docker_client,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path | None]]:
    """(DOCKER_HOST, the tmpfs of its data root or None) of an engine for this module
    only, holding the base image: as root a second dockerd whose data root is a small
    tmpfs, else the rootless second engine."""
    if os.geteuid() != 0:
        host, data = request.getfixturevalue("second_engine"), None
        proc = None
    else:
        root = tmp_path_factory.mktemp("disk-engine")
        data = root / "data"
        for d in ("run", "data", "exec"):
            (root / d).mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=900m", "labctl-test", str(data)],
                       check=True)
        # A bridge of its own: a second dockerd with `--bridge none` in the host's network
        # deletes docker0, the main engine's bridge (its containers could not start).
        for cmd in (["link", "add", BRIDGE, "type", "bridge"],
                    ["addr", "add", "172.31.251.1/24", "dev", BRIDGE],
                    ["link", "set", BRIDGE, "up"]):
            subprocess.run(["ip", *cmd], check=True, capture_output=True)
        host = f"unix://{root / 'run' / 'docker.sock'}"
        log = (root / "dockerd.log").open("w")
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(data), "--exec-root", str(root / "exec"), "-H", host,
             "--pidfile", str(root / "run" / "docker.pid"), "--bridge", BRIDGE,
             "--iptables=false", "--ip-masq=false", "--userland-proxy=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_docker(proc, "the test engine", root / "dockerd.log", "-H", host,
                        seconds=60)
    try:
        load_base(host)
        yield host, data
    finally:
        if proc is not None:
            stop_group(proc)
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(["umount", "-l", str(data)], check=True)
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


def _run(host: str, *args: str, cwd: Path, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return labctl(*args, cwd=cwd, check=check, env={"DOCKER_HOST": host, **(env or {})})


def _docker(host: str, *args: str, check: bool = True, input: str | None = None) -> str:
    return subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True,
                          check=check, input=input).stdout.strip()


def _engine_df(host: str) -> dict:
    import docker

    return docker.DockerClient(base_url=host).df()


def _id(host: str, ref: str) -> str:
    return _docker(host, "image", "inspect", "--format", "{{.Id}}", ref, check=False)


@pytest.fixture(scope="module")
def lab(engine_host, tmp_path_factory) -> Path:
    host, _ = engine_host
    root = write_lab(tmp_path_factory.mktemp("disk") / "lab", {"a": A, "b": B}, SETTINGS)
    _run(host, "build", "a", "b", cwd=root)
    return root


def test_df_counts_a_layer_two_labs_share_once(engine_host, lab: Path) -> None:
    host, _ = engine_host
    rep = json.loads(_run(host, "df", "--json", cwd=lab).stdout)
    eng = {i["RepoTags"][0]: i for i in _engine_df(host)["Images"] if i["RepoTags"]}
    specs = {s["spec"]: s for s in rep["specs"]}
    for name in ("a", "b"):
        img, theirs = specs[name]["image"], eng[f"{TAG_PREFIX}{name}:latest"]
        assert img["size"] == theirs["Size"]  # the engine's own layer sizes, added up
        assert img["unique"] == theirs["Size"] - theirs["SharedSize"]
        assert img["shared"] > 100 * MB  # the base and the system layers: both labs'
    # a and b together, each layer once: what the engine holds in layers (its only other
    # image, the base, is their bottom layer)
    assert rep["images_total"] == _engine_df(host)["LayersSize"]
    assert rep["images_total"] < specs["a"]["image"]["size"] + specs["b"]["image"]["size"]
    table = _run(host, "df", cwd=lab).stdout
    assert "GB" in table and "would free" in table and "build cache" in table


def _cli_build(host: str, folder: Path, *tag: str) -> None:
    """A BuildKit build of ``folder`` by the docker CLI itself, not by labctl."""
    from labctl.image.buildkit import find_cli

    cli = find_cli()
    if cli is None:
        pytest.skip("no docker CLI here runs BuildKit builds")
    proc = subprocess.run([*cli.argv, "-q", "--network=host", *tag, str(folder)],
                          capture_output=True, text=True,
                          env={**os.environ, **dict(cli.env), "DOCKER_HOST": host})
    assert proc.returncode == 0, proc.stderr


def _other_image(host: str, tmp: Path, tag: str, n: int) -> None:
    """An image labctl did not make (no labels)."""
    (tmp / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo {n} > /n\n")
    _cli_build(host, tmp, "-t", tag)


def test_prune_removes_old_and_dangling_images_and_nothing_else(engine_host, lab: Path,
                                                                 tmp_path: Path) -> None:
    host, _ = engine_host
    _other_image(host, tmp_path, "someone/else:1", 1)
    _other_image(host, tmp_path, "someone/else:1", 2)  # the first is now dangling: not ours
    dangling_other = [i for i in _docker(host, "images", "-q", "--no-trunc", "--filter",
                                         "dangling=true").split()]

    old_a = _id(host, f"{TAG_PREFIX}a:latest")
    running = _id(host, f"{TAG_PREFIX}b:latest")
    _docker(host, "run", "-d", "--name", "disk-running", "--entrypoint", "sleep",
            f"{TAG_PREFIX}b:latest", "600")
    spec_a, spec_b = lab / "images" / "a.yaml", lab / "images" / "b.yaml"
    spec_a.write_text(A.replace("six==1.16.0", "six==1.17.0"))
    spec_b.write_text(B + "env: {X: '1'}\n")
    _run(host, "build", "a", "b", cwd=lab)  # old a: dangling; old b: a container's image
    current = {n: _id(host, f"{TAG_PREFIX}{n}:latest") for n in ("a", "b")}
    assert old_a not in current.values() and running not in current.values()

    rep = json.loads(_run(host, "df", "--json", cwd=lab).stdout)
    older = {s["spec"]: [o["id"] for o in s["older"]] for s in rep["specs"]}
    assert older["a"] == [old_a] and older["b"] == [running]

    asked = _run(host, "prune", cwd=lab, check=False)  # no terminal to ask on, no --yes
    assert asked.returncode != 0 and "--yes" in asked.stderr and "Traceback" not in asked.stderr
    dry = json.loads(_run(host, "prune", "--dry-run", "--json", cwd=lab).stdout)
    assert [i["id"] for i in dry["plan"]["items"] if i["kind"] == "image"] == [old_a[7:19]]
    assert dry["plan"]["images_bytes"] > 0 and _id(host, old_a)

    before = set(_docker(host, "images", "-aq", "--no-trunc").split())
    done = json.loads(_run(host, "prune", "--yes", "--json", cwd=lab).stdout)
    after = set(_docker(host, "images", "-aq", "--no-trunc").split())
    assert before - after == {old_a}, done
    for survivor in [*current.values(), running, _id(host, "someone/else:1"), *dangling_other,
                     _id(host, BASE)]:
        assert survivor in after
    assert done["freed"] > 0
    _docker(host, "rm", "-f", "disk-running")


def test_builds_keep_labctls_build_cache_within_its_budget(engine_host, lab: Path,
                                                            tmp_path: Path) -> None:
    host, _ = engine_host
    # another build's cache (not labctl's): it must survive any trim
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BASE}\nRUN --mount=type=cache,target=/c head -c 5000000 /dev/urandom"
        " > /c/blob && echo done\n")
    _cli_build(host, tmp_path)
    cache = json.loads(_run(host, "df", "--json", cwd=lab).stdout)["build_cache"]
    assert cache["apt"] > 20 * MB and cache["other"] >= 5 * MB  # apt's lists, at least
    budget = cache["labctl_total"] - 10 * MB
    with (lab / "labctl.yaml").open("a") as f:
        f.write(f"build_cache_budget: {budget}\n")
    (lab / "images" / "a.yaml").write_text(A.replace("six==1.16.0", "six==1.15.0"))
    built = _run(host, "build", "a", "--progress", "plain", cwd=lab)
    assert "trimmed labctl's build cache" in built.stdout + built.stderr
    after = json.loads(_run(host, "df", "--json", cwd=lab).stdout)["build_cache"]
    assert after["labctl_total"] <= budget and after["other"] == cache["other"]


@pytest.mark.root
def test_a_build_the_disk_has_no_room_for_is_refused_before_it_starts(engine_host, lab: Path
                                                                      ) -> None:
    host, data = engine_host
    if os.geteuid() != 0 or data is None:
        pytest.skip("needs root: the engine's data root on a small tmpfs")
    tag = f"{TAG_PREFIX}a:latest"
    before = _id(host, tag)
    assert before
    filler = data / "filler"
    free = shutil.disk_usage(data).free
    with filler.open("wb") as f:  # leave 30 MB: less than the image's own layers
        os.posix_fallocate(f.fileno(), 0, free - 30 * MB)
    try:
        proc = _run(host, "build", "a", "--no-cache", cwd=lab, check=False)
        text = " ".join(proc.stderr.split())
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        print(f"\nrefused: {proc.stderr}")
        assert "not enough disk space to build 'a'" in text and str(data) in text, text
        assert " free" in text and "MB" in text and "labctl prune" in text, text
        assert _id(host, tag) == before  # the previous image stays tagged

        # the doctor says the same of a spec whose image is gone (its previous build left)
        _docker(host, "tag", tag, "kept/a:1")
        _docker(host, "rmi", tag)
        doctor = json.loads(_run(host, "doctor", "a", "--json", cwd=lab, check=False).stdout)
        _docker(host, "tag", before, tag)
        _docker(host, "rmi", "kept/a:1")
        rows = [r for r in doctor if r["id"].startswith("spec.disk")]
        assert [r["status"] for r in rows] == ["fail"], doctor
        assert "would be refused" in rows[0]["message"] and "labctl prune" in rows[0]["fix"]

        # past the check, the engine's own out-of-space error, in words, the image kept
        full = _run(host, "build", "a", "--no-cache", cwd=lab, check=False,
                    env={"LABCTL_NO_DISK_CHECK": "1"})
        text = " ".join(full.stderr.split())
        print(f"out of space midway: {full.stderr[-1500:]}")
        assert full.returncode != 0 and "Traceback" not in full.stderr, full.stderr
        assert "disk" in text and "labctl prune" in text, text
        assert _id(host, tag) == before
    finally:
        filler.unlink()
