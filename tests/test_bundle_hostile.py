"""Bundles are a classmate's files: untrusted. A hostile or broken one is refused with a
LabError before anything is written; nothing lands outside the lab folder; the engine
applies no tag of the bundle's; decompression is bounded; credentials and files behind
links never leave on save. The pure part builds bundles with format.Writer (every member
name under the test's control); the engine part runs the real CLI on tiny images."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard
from conftest import REPO, TAG_PREFIX, labctl, tar_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.bundle import format as fmt
from labctl.bundle import transfer
from labctl.config.lab import SETTINGS_FILE, VOLUMES_FILE, Lab, load_lab
from labctl.data import catalogue
from labctl.errors import LabError

SPEC = "description: tiny\nbase: debian:bookworm\n"
VOLUMES = (REPO / "volumes.yaml").read_text()


# --- a small real-looking bundle, every member name chosen here --------------------------
def docker_save(repo_tags: list[str] | None = None) -> tuple[list[tuple[str, bytes]], str, str]:
    """The members of a `docker save` (legacy layout) of a one-layer image, its id and
    its layer's diff id."""
    layer = tar_bytes([("hello.txt", b"hello from a bundle\n")])
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    hex_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{hex_id}.json", "Layers": ["abc/layer.tar"],
                            "RepoTags": repo_tags if repo_tags is not None
                            else [f"{TAG_PREFIX}tiny:latest"]}]).encode()
    members = [("abc/layer.tar", layer), ("abc/VERSION", b"1.0"), (f"{hex_id}.json", config),
               ("manifest.json", manifest),
               ("repositories", json.dumps({f"{TAG_PREFIX}tiny": {"latest": "abc"}}).encode())]
    return members, "sha256:" + hex_id, diff


Extra = tuple[str, bytes] | tuple[str, bytes, bytes]  # (name, data) or (name, type, link)


def make_bundle(lab: dict[str, bytes] | None = None, *, extra: list[Extra] = (),
                head: dict | None = None, docker: list[tuple[str, bytes]] | None = None,
                order: Callable[[list], list] | None = None) -> bytes:
    """A bundle of these lab files (default: a tiny lab) and a one-layer image; ``extra``
    members (with the head naming what ``head`` says), ``order`` to shuffle them."""
    if lab is None:
        lab = {VOLUMES_FILE: VOLUMES.encode(), "images/tiny.yaml": SPEC.encode(),
               SETTINGS_FILE: b"tag_prefix: labctl/\n"}
    saved, image_id, diff = docker_save()
    docker = saved if docker is None else docker
    h = fmt.Head(labctl="0.1.0", created="2026-12-01T00:00:00Z", lab_files=list(lab),
                 images=[fmt.BundleImage(name="tiny", tag="labctl/tiny:latest", id=image_id,
                                         hash=None, diff_ids=[diff], size=100)])
    h = fmt.Head.model_validate({**h.model_dump(), **(head or {})})
    members: list[Extra] = [(f"lab/{r}", d) for r, d in lab.items()] + list(extra)
    members += [(f"docker/{n}", d) for n, d in docker]
    if order:
        members = order(members)
    out = io.BytesIO()
    w = fmt.Writer(out, threads=0)
    w.head(h)
    for m in members:
        if len(m) == 3:
            _special(w, m[0], m[1], m[2])
        else:
            w.add_bytes(m[0], m[1])
    layers = {n: "sha256:" + hashlib.sha256(d).hexdigest() for n, d in docker
              if n.endswith("/layer.tar")}
    w.close(h, layers, {})
    return out.getvalue()


def _special(w: fmt.Writer, name: str, kind: bytes, link: bytes) -> None:
    """A link, device, fifo or folder member (what Writer.add_bytes never writes)."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link.decode()
    w._out.write(info.tobuf(tarfile.PAX_FORMAT))
    w.members[name] = fmt.Member(sha256=hashlib.sha256(b"").hexdigest(), size=0,
                                 link=link.decode() if kind == tarfile.SYMTYPE else None)


def dry_load(bundle: Path, target: Path) -> list[str]:
    """transfer.load without an engine: every check and write of a load, the images'
    stream read to its end as the engine would, the ids the bundle's manifest names
    taken for the ones the engine reports."""
    undo = transfer._Undo()
    stage: Path | None = None
    try:
        undo.mkdirs(target.parent)
        stage = transfer._fresh(target)
        with bundle.open("rb") as f, fmt.reading():
            reader = fmt.Reader(f)
            members = reader.members()
            plan, first = transfer._prepare(reader, members, target, stage)
            failure: list[LabError] = []
            ids: set[str] = set()
            for _ in transfer._engine_stream(reader, first, members, set(), set(), ids,
                                             failure):
                pass
            if failure:
                raise failure[0]
        transfer._refuse_unloaded(plan.head, ids, [f"Loaded image ID: {i}" for i in ids])
        written, _ = transfer._commit(plan, target, stage, undo)
    except BaseException:
        undo.run()
        raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return written


def test_a_staging_name_taken_in_a_shared_parent_is_not_in_the_way(tmp_path: Path) -> None:
    """Another account's folder (here: a file, a link) by the staging name, and a killed
    load's leftover of this user's: a new private folder, the leftover gone."""
    target = tmp_path / "lab"
    planted = tmp_path / ".lab.labctl-staging"
    planted.symlink_to("/etc")
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = tmp_path / f".lab.labctl-staging-{dead.pid}-x1"
    (leftover / "files").mkdir(parents=True)
    live = tmp_path / f".lab.labctl-staging-{os.getpid()}-x2"
    live.mkdir()
    stage = transfer._fresh(target)
    assert stage.parent == tmp_path and stage.is_dir() and not stage.is_symlink()
    assert stage.stat().st_mode & 0o777 == 0o700 and not any(stage.iterdir())
    assert not leftover.exists() and live.is_dir() and planted.is_symlink()


def snapshot(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = ("link:" + os.readlink(p)) if p.is_symlink() else \
            p.read_bytes() if p.is_file() else "dir"
    return out


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A home-like folder with a file of the learner's beside the lab's."""
    box = tmp_path / "home"
    box.mkdir()
    (box / "notes.txt").write_text("mine\n")
    return box


def write(box: Path, data: bytes, name: str = "b.labctl.zst") -> Path:
    path = box.parent / name  # beside the sandbox: the sandbox holds only what a load writes
    path.write_bytes(data)
    return path


def test_an_honest_bundle_loads(sandbox: Path) -> None:
    target = sandbox / "lab"
    written = dry_load(write(sandbox, make_bundle()), target)
    assert sorted(written) == sorted([VOLUMES_FILE, "images/tiny.yaml", SETTINGS_FILE])
    assert (target / "images/tiny.yaml").read_text() == SPEC
    assert sorted(p.name for p in sandbox.iterdir()) == ["lab", "notes.txt"]


# --- 1. member names, kinds and what the head names --------------------------------------
DATA = {"data": [{"entry": "x", "file": "f.bin", "member": "data/x/f.bin"}]}
HOSTILE = {
    "data-dotdot": ([("data/x/../../../.canary", b"owned")],
                    {"data": [{"entry": "x", "file": "f", "member": "data/x/../../../.canary"}]}),
    "data-unnamed": ([("data/x/f.bin", b"1"), ("data/y/g.bin", b"2")], DATA),
    "data-entry-with-slash": ([("data/a/b/f", b"1")],
                              {"data": [{"entry": "a/b", "file": "f", "member": "data/a/b/f"}]}),
    "wheel-dotdot": ([("wheelhouse/../../.canary.whl", b"w")],
                     {"wheels": ["../../.canary.whl"]}),
    "wheel-in-a-folder": ([("wheelhouse/a/b.whl", b"w")], {"wheels": ["a/b.whl"]}),
    "wheel-unnamed": ([("wheelhouse/b.whl", b"w")], {}),
    "wheel-not-a-wheel": ([("wheelhouse/b.sh", b"w")], {"wheels": ["b.sh"]}),
    "absolute": ([("/tmp/x", b"1")], {}),
    "other-prefix": ([("elsewhere/x", b"1")], {}),
    "empty-lab-path": ([("lab/", b"x")], {}),
    "lab-dotdot": ([("lab/../x", b"1")], {}),
    "lab-empty-part": ([("lab/images//a.yaml", b"1")], {}),
    "lab-not-in-head": ([("lab/images/b.yaml", b"1")], {}),
    "lab-symlink": ([("lab/images/b.yaml", tarfile.SYMTYPE, b"/etc/passwd")], {}),
    "lab-hardlink": ([("lab/images/b.yaml", tarfile.LNKTYPE, b"lab/volumes.yaml")], {}),
    "lab-fifo": ([("lab/images/b.yaml", tarfile.FIFOTYPE, b"")], {}),
    "lab-device": ([("lab/images/b.yaml", tarfile.CHRTYPE, b"")], {}),
    "lab-folder": ([("lab/images/sub", tarfile.DIRTYPE, b"")], {}),
    "data-symlink": ([("data/x/f.bin", tarfile.SYMTYPE, b"/etc/shadow")], DATA),
    "docker-dotdot": ([("docker/../../x", b"1")], {}),
    "docker-link-out": ([("docker/zz/layer.tar", tarfile.SYMTYPE, b"../../../etc/passwd")], {}),
    "docker-device": ([("docker/zz", tarfile.BLKTYPE, b"")], {}),
    "duplicate": ([("lab/images/tiny.yaml", b"pip: [evil]\n")], {}),
    # 2. labctl's own files and anything else a save never writes
    "labctl-env": ([("lab/.labctl/compose.env", b"X=1")],
                   {"lab_files": [VOLUMES_FILE, "images/tiny.yaml", SETTINGS_FILE,
                                  ".labctl/compose.env"]}),
    "labctl-token": ([("lab/.labctl/tokens/x", b"t")],
                     {"lab_files": [VOLUMES_FILE, "images/tiny.yaml", SETTINGS_FILE,
                                    ".labctl/tokens/x"]}),
    "hidden-in-images": ([("lab/images/.git/config", b"x")],
                         {"lab_files": [VOLUMES_FILE, "images/tiny.yaml", SETTINGS_FILE,
                                        "images/.git/config"]}),
    "other-top-file": ([("lab/.bashrc", b"x")],
                       {"lab_files": [VOLUMES_FILE, "images/tiny.yaml", SETTINGS_FILE,
                                      ".bashrc"]}),
    "head-names-a-missing-file": ([], {"lab_files": [VOLUMES_FILE, "images/tiny.yaml",
                                                      SETTINGS_FILE, "images/gone.yaml"]}),
    "file-and-folder": ([("lab/images/tiny.yaml/x", b"x")],
                        {"lab_files": [VOLUMES_FILE, "images/tiny.yaml", SETTINGS_FILE,
                                       "images/tiny.yaml/x"]}),
}


# Hugging Face snapshots: the blobs and the snapshot's paths come from the head.
HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Named as the hub cache names them: an LFS file by its SHA-256, a small one by git's SHA-1.
BLOB_A = hashlib.sha256(b"weights").hexdigest()
BLOB_B = hashlib.sha1(b"blob 2\0{}").hexdigest()


def hf_head(**change: object) -> dict:
    snap = {"repo": "hf:tiny-org/tiny", "revision": "main", "commit": HF_COMMIT,
            "folder": "models--tiny-org--tiny",
            "files": {"model.safetensors": BLOB_A, "config.json": BLOB_B,
                      "sub/config.json": BLOB_B}}
    return {"hf": [{**snap, **change}]}


def hf_members(folder: str = "models--tiny-org--tiny") -> list[Extra]:
    return [(f"hf/{folder}/{BLOB_A}", b"weights"), (f"hf/{folder}/{BLOB_B}", b"{}")]


HOSTILE.update({
    "hf-path-dotdot": (hf_members(), hf_head(files={"../../../.canary": BLOB_A,
                                                    "config.json": BLOB_B})),
    "hf-absolute-path": (hf_members(), hf_head(files={"/tmp/x": BLOB_A, "c": BLOB_B})),
    "hf-blob-dotdot": ([("hf/models--tiny-org--tiny/../../.canary", b"x")],
                       hf_head(files={"a": "../../.canary"})),
    "hf-blob-not-a-hash": ([("hf/models--tiny-org--tiny/notahash", b"x")],
                           hf_head(files={"a": "notahash"})),
    "hf-folder-not-the-repos": (hf_members("models--other--x"),
                                hf_head(folder="models--other--x")),
    "hf-folder-dotdot": (hf_members(), hf_head(folder="../../x")),
    "hf-repo-dotdot": (hf_members(), hf_head(repo="hf:../../etc")),
    "hf-repo-with-revision": (hf_members(), hf_head(repo="hf:tiny-org/tiny@v1")),
    "hf-revision-dotdot": (hf_members(), hf_head(revision="../../../x")),
    "hf-commit-not-a-commit": (hf_members(), hf_head(commit="../x")),
    "hf-path-too-long": (hf_members(), hf_head(files={"a" * 300: BLOB_A, "c": BLOB_B})),
    "hf-blob-unnamed": (hf_members() + [("hf/models--tiny-org--tiny/" + "c" * 64, b"x")],
                        hf_head()),
    "hf-blob-missing": (hf_members()[:1], hf_head()),
    "hf-blob-symlink": ([(f"hf/models--tiny-org--tiny/{BLOB_A}", tarfile.SYMTYPE,
                          b"/etc/shadow"), hf_members()[1]], hf_head()),
    "hf-file-and-folder": (hf_members(), hf_head(files={"a": BLOB_A, "a/b": BLOB_B})),
})


def test_a_hugging_face_snapshot_loads_as_huggingface_hub_reads_it(sandbox: Path) -> None:
    """Blobs once, the snapshot's links made again (relative, into blobs/), refs/main:
    huggingface_hub finds each file offline, in the lab's own cache volume."""
    from huggingface_hub import try_to_load_from_cache

    target = sandbox / "lab"
    dry_load(write(sandbox, make_bundle(extra=hf_members(), head=hf_head())), target)
    hub = target / "cache" / "huggingface" / "hub"
    repo = hub / "models--tiny-org--tiny"
    assert (repo / "refs" / "main").read_text() == HF_COMMIT
    assert sorted(p.name for p in (repo / "blobs").iterdir()) == [BLOB_A, BLOB_B]
    link = repo / "snapshots" / HF_COMMIT / "sub" / "config.json"
    assert os.readlink(link) == f"../../../blobs/{BLOB_B}"
    for name, data in (("model.safetensors", b"weights"), ("sub/config.json", b"{}")):
        found = try_to_load_from_cache("tiny-org/tiny", name, cache_dir=str(hub))
        assert isinstance(found, str) and Path(found).read_bytes() == data
    assert sorted(p.name for p in sandbox.iterdir()) == ["lab", "notes.txt"]


@pytest.mark.parametrize("which", ["lfs-sha256", "git-sha1"])
def test_a_hugging_face_blob_must_be_what_its_name_says(sandbox: Path, which: str) -> None:
    """A blob named as the hash of a file (a config, a modeling_*.py) but holding other
    bytes would be kept by a later genuine download: refused, nothing written."""
    before = snapshot(sandbox)
    weights, config = hf_members()
    planted = ([(weights[0], b"weightz"), config] if which == "lfs-sha256"
               else [weights, (config[0], b"{x}")])
    with pytest.raises(LabError) as e:
        dry_load(write(sandbox, make_bundle(extra=planted, head=hf_head())), sandbox / "lab")
    assert e.value.id == "bundle.hand-made" and "hash" in e.value.message
    assert snapshot(sandbox) == before


def test_a_hugging_face_snapshot_is_not_written_through_a_folder_link(sandbox: Path) -> None:
    target = sandbox / "lab"
    snap = target / "cache" / "huggingface" / "hub" / "models--tiny-org--tiny" / "snapshots"
    (target / "models" / "mine").mkdir(parents=True)
    snap.mkdir(parents=True)
    (snap / HF_COMMIT).symlink_to(target / "models" / "mine")
    before = snapshot(sandbox)
    with pytest.raises(LabError) as e:
        dry_load(write(sandbox, make_bundle(extra=hf_members(), head=hf_head())), target)
    assert e.value.id == "bundle.destination-blocked"
    assert snapshot(sandbox) == before


def test_save_carries_no_file_behind_a_link_in_the_hugging_face_cache(tmp_path: Path) -> None:
    """A lab's container may write the cache volume: a snapshot folder, or a folder in it,
    that links out (to a home folder) is refused, not followed; an honest one is read."""
    from labctl.data import hf

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("secret key")
    root = tmp_path / "lab"
    root.mkdir()
    (root / VOLUMES_FILE).write_text(VOLUMES)
    (root / "images").mkdir()
    lab = load_lab(str(root), environ={})
    repo = hf.hub_cache(lab) / "models--tiny-org--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(HF_COMMIT)
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / HF_COMMIT).symlink_to(home)
    ref = hf.parse_ref("hf:tiny-org/tiny")
    with pytest.raises(LabError) as e:
        hf.snapshot(lab, ref)
    assert e.value.id == "bundle.hf-bad-link"
    (repo / "snapshots" / HF_COMMIT).unlink()
    (repo / "snapshots" / HF_COMMIT).mkdir()
    (repo / "snapshots" / HF_COMMIT / "sub").symlink_to(home)
    with pytest.raises(LabError) as e:
        hf.snapshot(lab, ref)
    assert e.value.id == "bundle.hf-bad-link"
    (repo / "snapshots" / HF_COMMIT / "sub").unlink()
    (repo / "blobs").mkdir()
    (repo / "blobs" / BLOB_A).write_bytes(b"weights")
    (repo / "snapshots" / HF_COMMIT / "model.safetensors").symlink_to(f"../../blobs/{BLOB_A}")
    got = hf.snapshot(lab, ref)
    assert got.files == {"model.safetensors": BLOB_A} and got.commit == HF_COMMIT


def test_a_hugging_face_cache_path_with_dotdot_is_not_the_cache(tmp_path: Path) -> None:
    from labctl.data import hf

    root = tmp_path / "lab"
    root.mkdir()
    (root / VOLUMES_FILE).write_text(VOLUMES.replace("HF_HOME: /cache/huggingface",
                                                     "HF_HUB_CACHE: /cache/../.git"))
    (root / "images").mkdir()
    assert "HF_HUB_CACHE: /cache/../.git" in (root / VOLUMES_FILE).read_text()
    with pytest.raises(LabError) as e:
        hf.hub_cache(load_lab(str(root), environ={}))
    assert e.value.id == "hf.no-hf-home"


def test_a_hugging_face_file_the_learner_has_stays(sandbox: Path) -> None:
    """A snapshot path already there (the learner's own download) is left as it is."""
    target = sandbox / "lab"
    repo = target / "cache" / "huggingface" / "hub" / "models--tiny-org--tiny"
    mine = repo / "snapshots" / HF_COMMIT / "config.json"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("f" * 40)
    dry_load(write(sandbox, make_bundle(extra=hf_members(), head=hf_head())), target)
    assert mine.read_bytes() == b"mine" and not mine.is_symlink()
    assert (repo / "refs" / "main").read_text() == "f" * 40  # the learner's main stays
    assert (repo / "snapshots" / HF_COMMIT / "model.safetensors").read_bytes() == b"weights"


def test_a_hugging_face_cache_that_leads_outside_the_lab_is_refused(sandbox: Path,
                                                                    tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = sandbox / "lab"
    (target / "cache" / "huggingface").mkdir(parents=True)
    (target / "cache" / "huggingface" / "hub").symlink_to(outside)
    before = snapshot(sandbox)
    with pytest.raises(LabError) as e:
        dry_load(write(sandbox, make_bundle(extra=hf_members(), head=hf_head())), target)
    assert e.value.id == "bundle.data-outside"
    assert snapshot(sandbox) == before and not any(outside.iterdir())


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_member_is_refused_before_anything_is_written(case: str, sandbox: Path
                                                                ) -> None:
    extra, head = HOSTILE[case]
    data = make_bundle(extra=extra, head=head)
    before = snapshot(sandbox)
    with pytest.raises(LabError, match="damaged or incomplete"):
        fmt.verify(io.BytesIO(data))  # `labctl load --list` refuses it too
    with pytest.raises(LabError):
        dry_load(write(sandbox, data), sandbox / "lab")
    assert snapshot(sandbox) == before  # nothing written, the staging folder gone
    assert not (sandbox.parent / ".canary").exists()


def test_the_lab_files_a_load_accepts_are_the_ones_a_save_writes() -> None:
    assert fmt.LAB_TOP == (VOLUMES_FILE, SETTINGS_FILE, catalogue.LAB_FILE)
    for ok in ("images/a.yaml", "images/sub/check.sh", VOLUMES_FILE, "datasets.yaml"):
        assert fmt.lab_file_problem(ok) is None, ok
    for bad in ("", ".labctl/x", "images", "images/.x", "images/a/.b/c", "x.yaml",
                "images/__pycache__/a.pyc", "/images/a", "images/../a", "images\\a"):
        assert fmt.lab_file_problem(bad), bad


# --- 3. the engine applies no tag of the bundle's ----------------------------------------
def test_the_engine_gets_no_tag_and_labctl_learns_the_ids() -> None:
    members, image_id, _ = docker_save(["debian:bookworm", "other/lab:latest"])
    docs = dict(members)
    body, ids = fmt.untagged("manifest.json", docs["manifest.json"])
    assert [e["RepoTags"] for e in json.loads(body)] == [None] and ids == {image_id}
    assert fmt.untagged("repositories", docs["repositories"]) == (b"{}", set())
    oci = {"manifests": [{"digest": "sha256:" + "a" * 64, "annotations": {
        "io.containerd.image.name": "docker.io/library/debian:bookworm",
        "org.opencontainers.image.ref.name": "bookworm", "keep": "1"}}]}
    body, _ = fmt.untagged("index.json", json.dumps(oci).encode())
    assert json.loads(body)["manifests"][0]["annotations"] == {"keep": "1"}
    body, ids = fmt.untagged("manifest.json", json.dumps(
        [{"Config": "blobs/sha256/" + "b" * 64, "RepoTags": ["x:y"], "Layers": []}]).encode())
    assert ids == {"sha256:" + "b" * 64}
    with pytest.raises(LabError):
        fmt.untagged("manifest.json", b'[{"Config": "../../etc/passwd"}]')


def test_the_stream_to_the_engine_carries_no_tag_while_the_checksums_hold(sandbox: Path
                                                                          ) -> None:
    """The manifest's checksum is of manifest.json as the bundle has it; the engine gets
    it rewritten."""
    members, image_id, _ = docker_save(["debian:bookworm"])
    data = make_bundle(docker=members)
    with io.BytesIO(data) as f, fmt.reading():
        reader = fmt.Reader(f)
        it = reader.members()
        plan, first = transfer._prepare(reader, it, sandbox / "lab", sandbox)
        failure: list[LabError] = []
        ids: set[str] = set()
        stream = b"".join(bytes(c) for c in transfer._engine_stream(
            reader, first, it, set(), set(), ids, failure))
    assert not failure and ids == {image_id}
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert manifest[0]["RepoTags"] is None
        assert json.loads(tar.extractfile("repositories").read()) == {}
    assert b"debian:bookworm" not in stream


def test_an_image_id_the_manifest_does_not_name_is_not_tagged(sandbox: Path) -> None:
    data = make_bundle(head={"images": [fmt.BundleImage(
        name="tiny", tag="x:latest", id="sha256:" + "c" * 64, hash=None, diff_ids=[],
        size=1)]})
    with pytest.raises(LabError, match="its images do not hold"):
        dry_load(write(sandbox, data), sandbox / "lab")
    assert not (sandbox / "lab").exists()


# --- 4. bounded decompression --------------------------------------------------------------
def _peak(data: bytes, tmp_path: Path) -> dict:
    """fmt.verify of ``data`` in a fresh interpreter: its outcome and peak memory."""
    path = tmp_path / "bomb.labctl.zst"
    path.write_bytes(data)
    code = (
        "import json\n"
        "from labctl.bundle import format as fmt\n"
        "from labctl.errors import LabError\n"
        "try:\n"
        f"    fmt.verify(open({str(path)!r}, 'rb')); out = 'ok'\n"
        "except LabError as e:\n"
        "    out = str(e)\n"
        # VmHWM: this process's peak (ru_maxrss can carry the forking parent's)
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
        "print(json.dumps({'out': out, 'mb': int(hwm.split()[1]) / 1024}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _tar_of(members: list[tuple[tarfile.TarInfo, bytes | int]]) -> Callable[[], bytes]:
    """A raw tar stream: each member's data given, or (an int) that many zero bytes."""
    def chunks():
        for info, data in members:
            yield info.tobuf(tarfile.PAX_FORMAT)
            if isinstance(data, int):
                for _ in range(data >> 20):
                    yield bytes(1 << 20)
                yield bytes(-data % 512)
            else:
                yield data + bytes(-len(data) % 512)
        yield bytes(1024)
    return chunks


def _compress(chunks: Callable[[], object]) -> bytes:
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as w:
        for c in chunks():
            w.write(c)
    return out.getvalue()


def _info(name: str, size: int, type_: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, type_
    return info


def _head_bytes() -> bytes:
    return fmt.Head(labctl="0", created="x", images=[], lab_files=["images/a.yaml"]
                    ).model_dump_json().encode()


@pytest.mark.parametrize("case", ["docker-zeros", "lab-file-zeros", "huge-head"])
def test_a_decompression_bomb_is_refused_in_bounded_memory(case: str, tmp_path: Path) -> None:
    head = _head_bytes()
    members = {
        "docker-zeros": [(_info(fmt.HEAD, len(head)), head),
                         (_info("lab/images/a.yaml", 1), b"x"),
                         (_info("docker/zz/layer.tar", 1 << 30), 1 << 30)],
        "lab-file-zeros": [(_info(fmt.HEAD, len(head)), head),
                           (_info("lab/images/a.yaml", 1 << 30), 1 << 30)],
        "huge-head": [(_info(fmt.HEAD, 1 << 30), 1 << 30)],
    }[case]
    data = _compress(_tar_of(members))
    assert len(data) < 200_000  # a file of KBs, 1 GiB inside
    got = _peak(data, tmp_path)
    assert "damaged or incomplete" in got["out"], got
    print(case, got["mb"], "MB")
    assert got["mb"] < 400, got  # before: 1.1 GB, or a MemoryError traceback


def test_a_huge_tar_extension_header_is_refused(tmp_path: Path) -> None:
    pax = _info("././@PaxHeader", 300 << 20, tarfile.XHDTYPE)
    data = _compress(_tar_of([(pax, 300 << 20)]))
    got = _peak(data, tmp_path)
    print("pax", got["mb"], "MB")
    assert "damaged or incomplete" in got["out"] and got["mb"] < 250, got


def test_a_frame_asking_for_a_huge_window_is_refused() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=30)
    raw = b"".join(_tar_of([(_info(fmt.HEAD, 3), b"abc")])())
    data = zstandard.ZstdCompressor(compression_params=params).compress(raw)
    with pytest.raises(LabError, match="damaged or incomplete"):
        fmt.verify(io.BytesIO(data))


def test_bounded_decompression_reads_what_it_read_before() -> None:
    """Slices and counting change nothing for an honest bundle: with a layer of random
    bytes (no compression) and one of zeros (a lot of it)."""
    rnd = random.Random(7).randbytes(3 << 20)
    data = make_bundle(docker=[("abc/layer.tar", rnd), ("zero/layer.tar", bytes(8 << 20))],
                       head={"images": []})
    m = fmt.verify(io.BytesIO(data))
    assert m.members["docker/abc/layer.tar"].size == 3 << 20
    assert m.members["docker/zero/layer.tar"].sha256 == hashlib.sha256(bytes(8 << 20)
                                                                      ).hexdigest()


# --- 5. everything checkable is checked before the first byte is written -------------------
LAB = {VOLUMES_FILE: VOLUMES.encode(), "images/tiny.yaml": SPEC.encode(),
       SETTINGS_FILE: b"tag_prefix: labctl/\n"}
PREWRITE = {
    "no-volumes-file": ({k: v for k, v in LAB.items() if k != VOLUMES_FILE}, {},
                        "carries no volumes.yaml"),
    "volumes-not-yaml": ({**LAB, VOLUMES_FILE: b"volumes: [\n"}, {}, "volumes.yaml"),
    "volumes-of-etc": ({**LAB, VOLUMES_FILE: b"volumes:\n  d: {host: /etc, container: /d}\n"},
                       {}, "system folder"),
    "volumes-unknown-key": ({**LAB, VOLUMES_FILE: b"volumez: {}\n"}, {}, "volumes.yaml"),
    "bad-settings": ({**LAB, SETTINGS_FILE: b"tag_prefix: 'UPPER CASE/'\n"}, {},
                     "labctl.yaml"),
    "bad-image-name": (LAB, {"images": [fmt.BundleImage(
        name="../evil", tag="x:latest", id="sha256:" + "a" * 64, hash=None, diff_ids=[],
        size=1)]}, "image name"),
    "image-without-spec": ({k: v for k, v in LAB.items() if k != "images/tiny.yaml"}, {},
                           "no spec images/tiny.yaml"),
}


@pytest.mark.parametrize("case", sorted(PREWRITE))
def test_a_bundle_that_cannot_load_writes_nothing(case: str, sandbox: Path) -> None:
    lab, head, why = PREWRITE[case]
    data = make_bundle(lab, head=head)
    before = snapshot(sandbox)
    with pytest.raises(LabError, match=why):
        dry_load(write(sandbox, data), sandbox / "lab")
    assert snapshot(sandbox) == before


def test_a_file_where_a_folder_goes_is_refused_before_writing(sandbox: Path) -> None:
    target = sandbox / "lab"
    target.mkdir()
    (target / "wheelhouse").write_text("a file, not a folder\n")
    data = make_bundle(extra=[("wheelhouse/w-1-py3-none-any.whl", b"wheel")],
                       head={"wheels": ["w-1-py3-none-any.whl"]})
    before = snapshot(sandbox)
    with pytest.raises(LabError, match="wheelhouse is a file"):
        dry_load(write(sandbox, data), target)
    assert snapshot(sandbox) == before


def test_a_write_that_fails_half_way_is_rolled_back(sandbox: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What no check foresaw (here: the wheel's rename fails, as on a full or read-only
    disk): the lab files written before it are removed again."""
    target = sandbox / "lab"
    data = make_bundle(extra=[("wheelhouse/w-1-py3-none-any.whl", b"wheel")],
                       head={"wheels": ["w-1-py3-none-any.whl"]})
    before = snapshot(sandbox)
    real = transfer._move

    def failing(src: Path, dest: Path) -> None:
        if dest.name.endswith(".whl"):
            raise PermissionError(13, "Permission denied", str(dest))
        real(src, dest)

    monkeypatch.setattr(transfer, "_move", failing)
    with pytest.raises(PermissionError):
        dry_load(write(sandbox, data), target)
    assert snapshot(sandbox) == before  # the lab files written first are gone again


DATASETS = b"""entries:
  tinydata:
    description: a tiny data set
    volume: data
    files:
      - urls: ["https://data.example/f.bin"]
        to: tiny/f.bin
        size: 5
"""


@pytest.mark.parametrize("host", ["data", "OUTSIDE"])
def test_data_goes_only_into_the_lab_folder(host: str, sandbox: Path) -> None:
    """A data file lands where its volume is, inside the lab folder; a bundle whose
    volumes.yaml points that volume elsewhere is refused before anything is written."""
    outside = sandbox.parent / "elsewhere"
    volumes = f"volumes:\n  data: {{host: {outside if host == 'OUTSIDE' else host},"
    lab = {**LAB, VOLUMES_FILE: (volumes + " container: /data}\n").encode(),
           catalogue.LAB_FILE: DATASETS}
    data = make_bundle(lab, extra=[("data/tinydata/f.bin", b"12345")], head={"data": [
        {"entry": "tinydata", "file": "f.bin", "member": "data/tinydata/f.bin"}]})
    before = snapshot(sandbox)
    if host == "OUTSIDE":
        with pytest.raises(LabError, match="outside the lab folder"):
            dry_load(write(sandbox, data), sandbox / "lab")
        assert snapshot(sandbox) == before and not outside.exists()
    else:
        dry_load(write(sandbox, data), sandbox / "lab")
        assert (sandbox / "lab" / "data" / "tiny" / "f.bin").read_bytes() == b"12345"


def test_a_bundles_volume_outside_the_lab_is_refused_unless_the_lab_says_so(sandbox: Path
                                                                         ) -> None:
    """A volumes.yaml that mounts a folder of the learner's (~/bin, writable in every run)
    is refused even with no data file in it; the learner's own volumes.yaml may say so."""
    outside = sandbox.parent / "bin"
    outside.mkdir()
    volumes = f"volumes:\n  tools: {{host: {outside}, container: /workspace/tools}}\n".encode()
    bundle = write(sandbox, make_bundle({**LAB, VOLUMES_FILE: volumes}))
    before = snapshot(sandbox)
    with pytest.raises(LabError, match="volumes.tools.host: .* is outside the lab folder"
                       ) as e:
        dry_load(bundle, sandbox / "lab")
    assert e.value.id == "bundle.volume-outside" and "yourself" in (e.value.fix or "")
    assert snapshot(sandbox) == before
    # the learner wrote the same volumes.yaml: their choice, so the load goes on
    (sandbox / "lab").mkdir()
    (sandbox / "lab" / VOLUMES_FILE).write_bytes(volumes)
    dry_load(bundle, sandbox / "lab")
    assert (sandbox / "lab" / SETTINGS_FILE).is_file()


# --- 6. Ctrl-C: no worker keeps the interpreter from exiting --------------------------------
@pytest.mark.parametrize("pool", ["fmt._Hash._pool", "transfer._worker"])
def test_a_busy_worker_does_not_keep_an_interrupted_labctl_alive(pool: str) -> None:
    """Ctrl-C while a worker inspects images or hashes: the process ends at once (a
    ThreadPoolExecutor's thread was joined at exit: 50 s once)."""
    code = ("import time\nfrom labctl.bundle import format as fmt, transfer\n"
            f"{pool}.submit(time.sleep, 60)\ntime.sleep(0.2)\nraise KeyboardInterrupt\n")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "KeyboardInterrupt" in proc.stderr and time.monotonic() - t0 < 20


# --- 7. credentials ------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "want"), [
    ("https://u:p/ss@host/x", "https://host/x"),
    ("https://u:p@ss@host/x", "https://host/x"),
    ("index_url: https://me:tok@pypi.example/simple  # mine\n",
     "index_url: https://pypi.example/simple  # mine\n"),
    ("extra_index_urls: ['https://a:b@one.example/s', \"http://c:d/e@two.example\"]",
     "extra_index_urls: ['https://one.example/s', \"http://two.example\"]"),
    ("https://__token__@h.example/x", "https://h.example/x"),
    ("git+https://u:tok@github.com/o/r@v1.0", "git+https://github.com/o/r@v1.0"),
    ("git+https://github.com/o/r@v1.0", "git+https://github.com/o/r@v1.0"),
    ("https://host.example:8443/simple", "https://host.example:8443/simple"),
    ("https://h.example/a@b", "https://h.example/a@b"),
    ("a https://u:p@h/x b https://h2/y@z", "a https://h/x b https://h2/y@z"),
])
def test_credentials_are_stripped_from_every_url(text: str, want: str) -> None:
    assert transfer.strip_credentials(text) == want


_PART = st.text(st.characters(min_codepoint=33, max_codepoint=126,
                              blacklist_characters="'\"<>"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(user=st.from_regex(r"[a-z0-9._-]{1,8}", fullmatch=True),
       # not "//..." either: after "user:" it reads as a scheme (a://), and a real URL
       # percent-encodes a "/" of its userinfo anyway (RFC 3986)
       password=_PART.filter(lambda p: "://" not in f":{p}" and not ("@" in p and "/" in p)),
       host=st.from_regex(r"[a-z0-9]{1,8}(\.[a-z]{2,4})?(:[0-9]{2,5})?", fullmatch=True),
       path=st.from_regex(r"(/[a-z0-9._@-]{0,8}){0,3}", fullmatch=True))
def test_no_password_survives(user: str, password: str, host: str, path: str) -> None:
    """Any password without a space or quote (with '/' or '@', not both), any path."""
    got = transfer.strip_credentials(f"url: https://{user}:{password}@{host}{path} # x\n")
    assert got == f"url: https://{host}{path} # x\n"


# --- 8. links out of the lab folder are not followed on save -------------------------------
def test_a_link_in_the_lab_folder_is_not_saved(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("id_rsa\n")
    root = tmp_path / "lab"
    (root / "images" / "sub").mkdir(parents=True)
    (root / "images" / "tiny.yaml").write_text(SPEC)
    (root / "images" / "README.txt").symlink_to(secret)
    (root / "images" / "linked").symlink_to(tmp_path)  # a folder: not walked into
    (root / "images" / ".hidden").write_text("x")
    (root / "volumes.yaml").symlink_to(secret)
    (root / ".labctl").mkdir()
    (root / ".labctl" / "compose.env").write_text("TOKEN=x\n")
    warnings: list[str] = []
    rels = transfer.lab_files(Lab(root=root), warnings)
    assert rels == ["images/tiny.yaml"]
    assert len(warnings) == 3 and all("symlink" in w for w in warnings), warnings
    assert any("images/README.txt" in w for w in warnings)


# --- 9. fuzz: mutated real bundles ---------------------------------------------------------
def _mutations(seed: int) -> list[tuple[str, bytes]]:
    """~150 bundles: bytes flipped or cut in the file, and (so that zstd's checksum does
    not catch them first) in the tar inside it, recompressed; members renamed, reordered,
    left out or doubled, written with correct checksums."""
    rnd = random.Random(seed)
    good = make_bundle()
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(good)
    out = []
    for i in range(30):
        b = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        out.append((f"flip-file-{i}", bytes(b)))
    for i in range(15):
        out.append((f"cut-file-{i}", good[:rnd.randrange(len(good))]))
    for i in range(45):
        b = bytearray(raw)
        for _ in range(rnd.randint(1, 6)):
            at = rnd.randrange(min(len(b), 12_000))  # the headers and the lab files
            b[at] = rnd.choice([0, 0x2F, 0x2E, 0x30, 0x35, 0xFF, rnd.randrange(256)])
        out.append((f"flip-tar-{i}", zstandard.ZstdCompressor().compress(bytes(b))))
    for i in range(10):
        out.append((f"cut-tar-{i}", zstandard.ZstdCompressor().compress(
            raw[:rnd.randrange(len(raw))])))
    names = ["lab/../x", "lab/.labctl/tokens/t", "data/../../x", "wheelhouse/x.whl",
             "/abs", "lab/", "docker/../x", "lab/images/x/../../../y", "lab/images/tiny.yaml"]
    for i in range(30):
        extra = [(rnd.choice(names), b"payload")]
        head = rnd.choice([{}, {"lab_files": [*LAB, extra[0][0].partition("/")[2]]},
                           {"wheels": ["x.whl"]}])
        with contextlib.suppress(LabError):
            out.append((f"rename-{i}", make_bundle(extra=extra, head=head)))
    for i in range(20):
        def order(ms: list, r: random.Random = rnd) -> list:
            ms = list(ms)
            op = r.choice(["shuffle", "drop", "double"])
            if op == "shuffle":
                r.shuffle(ms)
            elif op == "drop":
                ms.pop(r.randrange(len(ms)))
            else:
                ms.insert(r.randrange(len(ms)), ms[r.randrange(len(ms))])
            return ms
        with contextlib.suppress(LabError):
            out.append((f"reorder-{i}", make_bundle(order=order)))
    return out


def test_fuzz_load_of_mutated_bundles(tmp_path: Path) -> None:
    """No traceback (LabError only), nothing written outside the lab folder, and the lab
    folder either untouched or loaded whole; in under a minute."""
    t0 = time.monotonic()
    cases = _mutations(20261203)
    assert len(cases) >= 140
    outcomes = {"refused": 0, "loaded": 0}
    for n, (name, data) in enumerate(cases):
        box = tmp_path / name
        box.mkdir()
        (box / "notes.txt").write_text("mine\n")
        target = box / "lab"
        if n % 2:  # half of them into a lab folder that is there already
            target.mkdir()
            (target / "mine.txt").write_text("mine\n")
        before = snapshot(box)
        path = write(box, data, f"{name}.zst")
        with contextlib.suppress(LabError):
            fmt.verify(io.BytesIO(data))
        try:
            dry_load(path, target)
        except LabError:
            outcomes["refused"] += 1
            assert snapshot(box) == before, name  # untouched
        else:
            outcomes["loaded"] += 1
            after = snapshot(box)
            assert {k: v for k, v in after.items() if not k.startswith("lab/")
                    and k != "lab"} == {k: v for k, v in before.items()
                                        if not k.startswith("lab/") and k != "lab"}, name
            for rel, content in LAB.items():  # complete
                assert after[f"lab/{rel}"] == content, name
            if n % 2:
                assert after["lab/mine.txt"] == b"mine\n"
        shutil.rmtree(box)
    print(outcomes, f"{time.monotonic() - t0:.0f} s")
    assert outcomes["refused"] > 100 and outcomes["loaded"] >= 1
    assert time.monotonic() - t0 < 60, outcomes


# --- on the engine: the real CLI, tiny images (`docker import` of one small file) ----------
_MADE: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def _remove_tiny_images() -> Iterator[None]:
    """The images this module imported (untagged ones too: conftest removes tags only)."""
    yield
    if _MADE:
        subprocess.run(["docker", "rmi", "-f", *_MADE], capture_output=True, timeout=120)


def tiny_image(tag: str, payload: bytes) -> str:
    """A one-layer image of one small file, tagged ``tag``; its id."""
    subprocess.run(["docker", "import", "-", tag], input=tar_bytes([("hello.txt", payload)]),
                   capture_output=True, check=True, timeout=120)
    made = image_id(tag)
    _MADE.add(made)
    return made


def image_id(ref: str) -> str | None:
    proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


def tiny_lab(root: Path, prefix: str, spec: str = SPEC) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "volumes.yaml").write_text(VOLUMES)
    (root / "images" / "tiny.yaml").write_text(spec)
    (root / "labctl.yaml").write_text(f"tag_prefix: {prefix}\n")
    return root


def rewrap(bundle: Path, out: Path,
           edit: Callable[[dict[str, tuple[tarfile.TarInfo, bytes]], fmt.Head], fmt.Head]
           ) -> Path:
    """``bundle`` with its members and head edited, written again with true checksums."""
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(bundle.read_bytes())
    members: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for info in tar.getmembers():
            members[info.name] = (info, tar.extractfile(info).read() if info.isfile() else b"")
    m = fmt.Manifest.model_validate_json(members.pop(fmt.MANIFEST)[1])
    del members[fmt.HEAD]
    head = edit(members, fmt.Head(**m.model_dump(include=set(fmt.Head.model_fields))))
    with out.open("wb") as f:
        w = fmt.Writer(f, threads=0)
        w.head(head)
        for name, (info, data) in members.items():
            if info.isdir():
                w.add_dir(name)
            elif info.issym():
                w.add_link(name, info.linkname)
            else:
                w.add_bytes(name, data, mode=info.mode)
        w.close(head, m.layers, m.omitted)
    return out


@pytest.fixture
def saved(docker_client, tmp_path: Path) -> tuple[Path, str, str]:
    """A bundle `labctl save` wrote of a lab (tag prefix .../a/) whose image is tiny; the
    image id and the lab's tag."""
    lab = tiny_lab(tmp_path / "lab-a", f"{TAG_PREFIX}a/")
    tag = f"{TAG_PREFIX}a/tiny:latest"
    img = tiny_image(tag, f"tiny {tmp_path.name}\n".encode())
    out = tmp_path / "tiny.labctl.zst"
    labctl("save", "tiny", "-o", str(out), cwd=lab, check=True, timeout=300)
    return out, img, tag


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.engine
def test_load_applies_no_tag_of_the_bundle_and_tags_this_lab_by_id(saved, tmp_path: Path
                                                                   ) -> None:
    """An honest bundle of account a's lab loaded into account b's lab, and a crafted one
    whose manifest.json names another tag: only b's tag moves."""
    bundle, img, tag_a = saved
    other = tiny_image(tag_a, b"a's newer image\n")  # account a has moved on
    victim = f"{TAG_PREFIX}victim:latest"
    subprocess.run(["docker", "tag", other, victim], check=True)

    def retag(members: dict, head: fmt.Head) -> fmt.Head:
        info, data = members["docker/manifest.json"]
        doc = json.loads(data)
        doc[0]["RepoTags"] = [tag_a, victim]
        members["docker/manifest.json"] = (info, json.dumps(doc).encode())
        return head

    crafted = rewrap(bundle, tmp_path / "crafted.labctl.zst", retag)
    for n, path in enumerate([bundle, crafted]):
        target = tiny_lab(tmp_path / f"lab-b{n}", f"{TAG_PREFIX}b{n}/")
        (target / "images" / "tiny.yaml").unlink()  # the bundle brings it
        proc = labctl("load", str(path), "--lab", str(target), "--json", timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["images"] == {"tiny": f"{TAG_PREFIX}b{n}/tiny:latest"}
        assert image_id(f"{TAG_PREFIX}b{n}/tiny:latest") == img
        assert image_id(tag_a) == other and image_id(victim) == other, path.name


@pytest.mark.engine
def test_a_bundle_that_cannot_load_loads_nothing(saved, tmp_path: Path) -> None:
    """No volumes.yaml (nor settings): refused before the image is tagged or a file is
    written; the same for volumes of a system folder."""
    bundle, _, _ = saved

    def drop(members: dict, head: fmt.Head) -> fmt.Head:
        for rel in (VOLUMES_FILE, SETTINGS_FILE):
            del members[f"lab/{rel}"]
        return head.model_copy(update={"lab_files": ["images/tiny.yaml"]})

    def etc(members: dict, head: fmt.Head) -> fmt.Head:
        info, _ = members["lab/volumes.yaml"]
        members["lab/volumes.yaml"] = (info, b"volumes:\n  d: {host: /etc, container: /d}\n")
        return head

    for edit, why in ((drop, "carries no volumes.yaml"), (etc, "system folder")):
        crafted = rewrap(bundle, tmp_path / f"{edit.__name__}.labctl.zst", edit)
        target = tmp_path / f"target-{edit.__name__}"
        proc = labctl("load", str(crafted), "--lab", str(target), timeout=300)
        assert proc.returncode != 0 and why in proc.stderr, proc.stderr
        _no_traceback(proc)
        assert not target.exists() and not list(tmp_path.glob(".target-*"))


@pytest.mark.engine
@pytest.mark.parametrize("case", ["data-dotdot", "empty-lab-path", "labctl-env",
                                  "wheel-dotdot"])
def test_a_hostile_bundle_writes_nothing_with_the_real_cli(docker_client, case: str,
                                                           tmp_path: Path) -> None:
    extra, head = HOSTILE[case]
    home = tmp_path / "home"
    home.mkdir()
    bundle = tmp_path / "x.labctl.zst"
    bundle.write_bytes(make_bundle(extra=extra, head=head))
    before = snapshot(tmp_path)
    proc = labctl("load", str(bundle), "--lab", str(home / "lab"), cwd=home, timeout=300)
    assert proc.returncode != 0 and "damaged or incomplete" in proc.stderr, proc.stderr
    _no_traceback(proc)
    assert snapshot(tmp_path) == before  # no canary, no lab folder, no staging folder


@pytest.mark.engine
def test_ctrl_c_stops_a_load_promptly_and_leaves_no_tag(saved, tmp_path: Path) -> None:
    """Interrupted at several moments: it ends within seconds; a load that did not finish
    tagged nothing and wrote nothing; the bundle's own tag is never applied."""
    bundle, img, tag_a = saved
    subprocess.run(["docker", "rmi", tag_a], capture_output=True, check=True)
    for n, delay in enumerate([0.5, 1.0, 1.5, 2.0, 3.0]):
        target = tmp_path / f"there-{n}"
        tiny_lab(target, f"{TAG_PREFIX}int{n}/").joinpath("images", "tiny.yaml").unlink()
        before = snapshot(target)
        proc = subprocess.Popen([sys.executable, "-m", "labctl", "load", str(bundle), "--lab",
                                 str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 10, f"{delay}: it took {time.monotonic() - t0:.0f} s"
        tag = image_id(f"{TAG_PREFIX}int{n}/tiny:latest")
        if b"loaded into" in out:  # it was done before the signal came
            assert tag == img
        else:
            assert tag is None and snapshot(target) == before, delay
        assert image_id(tag_a) is None  # the bundle's own tag: never applied


@pytest.mark.engine
def test_save_carries_no_credential_and_no_file_behind_a_link(docker_client, tmp_path: Path
                                                              ) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("ssh-private-key-of-the-learner\n")
    spec = SPEC + ('index_url: "https://u:p@ss@pypi.example/simple"\n'
                   'extra_index_urls: ["https://me:s3cr/t@extra.example/simple"]\n')
    lab = tiny_lab(tmp_path / "lab", f"{TAG_PREFIX}cred/", spec)
    (lab / "images" / "README.txt").symlink_to(secret)
    with (lab / "labctl.yaml").open("a") as f:
        f.write('data_mirrors: [{from: "https://d2l.example/", '
                'to: "https://student:t0k/en@mirror.example/d2l/"}]\n')
    tiny_image(f"{TAG_PREFIX}cred/tiny:latest", b"cred\n")
    out = tmp_path / "cred.labctl.zst"
    proc = labctl("save", "tiny", "-o", str(out), cwd=lab, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "images/README.txt is a symlink" in proc.stderr
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(out.read_bytes())
    for needle in (b"ssh-private-key", b"p@ss", b"ss@pypi", b"s3cr", b"t0k"):
        assert needle not in raw, needle
    assert b"https://pypi.example/simple" in raw and b"https://extra.example/simple" in raw
