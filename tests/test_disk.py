"""Disk use, without an engine: layer sizes from history, shared layers once, the prune
plan (what it may and may never remove), the build cache's trim order, a build's size
estimate, the budget setting and `labctl data rm`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, write_lab

from labctl import labels
from labctl.chains import chain_ids
from labctl.config.lab import load_lab
from labctl.errors import LabError
from labctl.image import disk

GB = 1000**3


def _hist(*steps: tuple[int, str]) -> list[dict]:
    """`docker history` rows (newest first) of steps given oldest first."""
    return [{"Size": size, "CreatedBy": by} for size, by in reversed(steps)]


def test_layer_sizes_follow_the_layers_not_the_metadata_steps() -> None:
    # BuildKit's WORKDIR makes an empty layer, ENV/LABEL make none
    hist = _hist((100, "Imported from -"), (0, "ENV A=1"), (30, "RUN x"), (0, "WORKDIR /w"),
                 (0, "LABEL a=b"), (7, "COPY f /f"))
    diff_ids = ["sha256:a", "sha256:b", "sha256:c", "sha256:d"]
    sizes = disk.layer_sizes(diff_ids, hist)
    assert list(sizes.values()) == [100, 30, 0, 7]
    assert list(sizes) == chain_ids(diff_ids)
    # the classic builder's history: #(nop) metadata, an empty RUN layer
    classic = _hist((100, "Imported from -"), (0, "/bin/sh -c #(nop)  ENV A=1"),
                    (0, "/bin/sh -c true"), (5, "/bin/sh -c #(nop) COPY file:abc in /f"))
    assert list(disk.layer_sizes(diff_ids[:3], classic).values()) == [100, 0, 5]


def _img(iid: str, layers: list[tuple[str, int]], tags: list[str] = (), lab: str = "",
         spec: str = "", created: int = 0) -> disk.Image:
    lbl = {labels.LAB: lab, labels.SPEC: spec} if lab else {}
    chains = [c for c, _ in layers]
    return disk.Image(iid, list(tags), lbl, sum(s for _, s in layers), created, chains,
                      dict(layers))


def test_a_layer_two_images_share_is_counted_once() -> None:
    a = _img("a", [("base", 100), ("torch", 7600), ("a1", 300)])
    b = _img("b", [("base", 100), ("torch", 7600), ("b1", 900)])
    assert disk.union([a, b]) == 100 + 7600 + 300 + 900
    assert disk.unique_part(a, [a, b]) == 300
    assert disk.freed_by([a], [b]) == 300  # removing a frees only what b does not hold
    assert disk.freed_by([a, b], []) == disk.union([a, b])


@pytest.fixture
def lab(tmp_path: Path):
    return load_lab(str(write_lab(tmp_path / "lab", {"tiny": "base: debian:bookworm\n"})),
                    environ={})


def _container(cid: str, image: str, state: str, lab_root: str = "", owner: str = "",
               spec: str = "tiny") -> dict:
    lbl = {labels.RUN: "0.1", labels.LAB: lab_root, labels.OWNER: owner,
           labels.SPEC: spec} if lab_root else {}
    return {"Id": cid, "Names": [f"/{cid}"], "ImageID": image, "State": state, "Labels": lbl,
            "SizeRw": 10}


def test_prune_takes_only_what_labctl_made_for_this_lab_and_nobody_uses(lab) -> None:
    root = str(lab.root)
    current = _img("cur", [("base", 100), ("c", 50)], [lab.image_tag("tiny")], root, "tiny")
    old = _img("old", [("base", 100), ("o", 40)], [], root, "tiny")
    running = _img("run", [("base", 100), ("r", 30)], [], root, "tiny")
    mine_tagged = _img("mine", [("base", 100), ("m", 20)], ["me/keep:1"], root, "tiny")
    other_lab = _img("elsewhere", [("base", 100), ("e", 10)], [], "/another/lab", "tiny")
    not_labctl = _img("plain", [("base", 100), ("p", 5)])  # dangling, no labels
    inv = disk.Inventory([current, old, running, mine_tagged, other_lab, not_labctl],
                         [_container("c1", "run", "running", root, str(os.getuid())),
                          _container("c2", "cur", "exited", root, str(os.getuid())),
                          _container("c3", "cur", "exited", root, "99999"),
                          _container("c4", "plain", "exited")], [])
    plan = disk.plan_prune(inv, lab, 10 * GB, containers=False)
    assert [(i.kind, i.id) for i in plan.items] == [("image", "old")]
    assert plan.images_bytes == 40 and plan.total == 40  # the shared base layer stays
    with_containers = disk.plan_prune(inv, lab, 10 * GB, containers=True)
    # only this user's stopped lab container of this lab folder; never a running one
    assert [(i.kind, i.name if i.kind == "container" else i.id)
            for i in with_containers.items] == [
        ("container", "c2"), ("image", "old")]


def _rec(rid: str, kind: str, size: int, used: str, desc: str, in_use: bool = False,
         shared: bool = False) -> dict:
    return {"ID": rid, "Type": kind, "Size": size, "LastUsedAt": used, "Description": desc,
            "InUse": in_use, "Shared": shared}


UV = "cached mount /root/.cache/uv from exec /bin/bash -o pipefail -c uv pip install" \
     " -r /opt/labctl/requirements-lab.txt"
APT = 'cached mount /var/lib/apt/lists from exec /bin/bash -c if [ -n "$LABCTL_APT_MIRROR" ]'
LAYER = "mount / from exec /bin/bash -o pipefail -c install -m 0644 -t /opt/labctl /mnt/x"


def test_the_build_cache_is_trimmed_oldest_first_and_its_cache_mounts_last() -> None:
    recs = [_rec("uv", "exec.cachemount", 6 * GB, "2026-01-01", UV),
            _rec("apt", "exec.cachemount", 1 * GB, "2026-01-02", APT),
            _rec("old", "regular", 2 * GB, "2026-01-03", LAYER),
            _rec("new", "regular", 2 * GB, "2026-02-01", LAYER),
            _rec("busy", "regular", 3 * GB, "2025-01-01", LAYER, in_use=True),
            _rec("image", "regular", 5 * GB, "2025-01-01", LAYER, shared=True),
            _rec("theirs", "regular", 50 * GB, "2020-01-01", "mount / from exec make")]
    assert [disk.cache_kind(r) for r in recs] == ["uv", "apt", "labctl", "labctl", "labctl",
                                                 "labctl", "other"]
    use = disk.cache_use(recs, 10 * GB)
    assert (use.uv, use.apt, use.labctl, use.other) == (6 * GB, 1 * GB, 7 * GB, 50 * GB)
    assert disk.trim_plan(recs, 20 * GB) == []  # 14 GB of labctl's: within the budget
    assert [r["ID"] for r in disk.trim_plan(recs, 10 * GB)] == ["old", "new"]
    assert [r["ID"] for r in disk.trim_plan(recs, 6 * GB)] == ["old", "new", "uv"]
    # never another build's record, one in use, or one an image holds
    assert {r["ID"] for r in disk.trim_plan(recs, 0)} == {"old", "new", "uv", "apt"}


def test_a_rebuild_is_sized_from_the_steps_that_change() -> None:
    dockerfile = ("FROM debian\nENV A=1\nCOPY labctl/lock-torch.txt /opt/\nRUN install"
                  " torch\nCOPY labctl/extras/ /opt/x/\nRUN install extras\n")
    files = {"labctl/lock-torch.txt": b"torch==2.5", "labctl/extras/req.txt": b"six"}
    before = disk.step_hashes(dockerfile, files)
    assert len(before) == 5
    extras = disk.step_hashes(dockerfile, {**files, "labctl/extras/req.txt": b"six\nrich"})
    assert extras[:3] == before[:3] and extras[3] != before[3] and extras[4] != before[4]
    torch = disk.step_hashes(dockerfile, {**files, "labctl/lock-torch.txt": b"torch==2.6"})
    assert torch[:1] == before[:1] and torch[1] != before[1]
    sizes = [0, 1000, 7 * GB, 200, 300 * 1000**2]  # the previous build's, one per step
    assert disk.need_from(before, before, sizes) == (0, 5)
    need, at = disk.need_from(extras, before, sizes)
    assert at == 3 and need == int((200 + 300 * 1000**2) * disk.MARGIN)
    assert disk.need_from(torch, before, sizes)[0] > 7 * GB


def test_the_refusal_names_the_figures_and_the_fix() -> None:
    err = disk.room_error(disk.Need("d2l", 9 * GB, "the previous build's layers", 2 * GB,
                                    "/var/lib/docker"))
    assert "9.0 GB" in err.message and "2.0 GB free" in err.message
    assert "/var/lib/docker" in err.message and "labctl prune" in err.fix
    assert "build_cache_budget" in err.fix and "docker system prune" not in err.fix
    assert disk.Need("x", None, "", 1, "").fits and disk.Need("x", 5, "", None, "").fits


def test_sizes_read_as_people_write_them(tmp_path: Path) -> None:
    assert disk.human(7_900_000_000) == "7.9 GB" and disk.human(25_000_000) == "25 MB"
    root = write_lab(tmp_path / "lab", {}, "build_cache_budget: 500MB\n")
    assert load_lab(str(root), environ={}).settings.build_cache_budget == 500 * 1000**2
    assert load_lab(str(write_lab(tmp_path / "d", {})), environ={}
                    ).settings.build_cache_budget == disk.DEFAULT_BUDGET
    (root / "labctl.yaml").write_text("build_cache_budget: lots\n")
    with pytest.raises(LabError) as info:
        load_lab(str(root), environ={})
    assert "build_cache_budget" in str(info.value) + " ".join(info.value.details)


def _tgz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _data_cli(root: Path, *args: str, input: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", "data", *args], cwd=root,
                          capture_output=True, text=True, timeout=120, input=input,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_data_rm_removes_the_entrys_files_and_nothing_else(tmp_path: Path) -> None:
    root = write_lab(tmp_path / "lab", {})
    entries = {
        "set": {"description": "an archive", "volume": "data", "files": [
            {"urls": ["https://example.invalid/set.tgz"], "to": "set/set.tgz",
             "extract": "untar"}]},
        "other": {"description": "another", "volume": "data", "files": [
            {"urls": ["https://example.invalid/o.bin"], "to": "set/keep/o.bin"}]},
    }
    (root / "datasets.yaml").write_text(yaml.safe_dump({"entries": entries}))
    data = root / "data"
    (data / "set").mkdir(parents=True)
    (data / "set" / "set.tgz").write_bytes(_tgz({"train/a.txt": b"a", "keep/x": b"x"}))
    (data / "set" / "train").mkdir()
    (data / "set" / "train" / "a.txt").write_text("a")
    (data / "set" / "keep").mkdir()
    (data / "set" / "keep" / "o.bin").write_text("other entry's")
    (data / "mine.txt").write_text("the learner's")
    (data / ".labctl-partial" / "set").mkdir(parents=True)
    (data / ".labctl-partial" / "set" / "set.tgz.part").write_text("half")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    (data / "set" / "train" / "link").symlink_to(outside)

    asked = _data_cli(root, "rm", "set")  # no terminal, no --yes: nothing removed
    assert asked.returncode != 0 and "--yes" in asked.stderr and "Traceback" not in asked.stderr
    assert (data / "set" / "set.tgz").exists()

    proc = _data_cli(root, "rm", "set", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not (data / "set" / "set.tgz").exists() and not (data / "set" / "train").exists()
    assert not (data / ".labctl-partial" / "set").exists()
    assert (data / "set" / "keep" / "o.bin").read_text() == "other entry's"
    assert (data / "mine.txt").exists() and (outside / "precious").read_text() == "keep"
    unknown = _data_cli(root, "rm", "nope", "--yes")
    assert unknown.returncode != 0 and "no catalogue entry" in unknown.stderr
