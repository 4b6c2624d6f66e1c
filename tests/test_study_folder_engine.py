"""A learner's study folder on the real engine: the books at any depth below --src share
the lab's data/ as their `../data`, and every folder of --src is live and the learner's
inside the lab (no root-owned folder, no snapshot taken at start)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import BASE, labctl, write_lab

pytestmark = pytest.mark.engine

TINY = (f"base: {BASE}\npip: ['six==1.16.0']\nvolumes: [data]\n"
        "src_volumes: {data: data}\n")
RAW = "FashionMNIST/raw/t10k-labels-idx1-ubyte"


@pytest.fixture(scope="module")
def study(docker_client, tmp_path_factory) -> Path:
    """The lab folder is the study folder (`labctl init .` there)."""
    root = write_lab(tmp_path_factory.mktemp("study") / "study", {"tiny": TINY})
    labctl("build", "tiny", cwd=root, check=True)
    return root


def _not_root_owned(tree: Path) -> list[Path]:
    return [p for p in [tree, *tree.rglob("*")] if p.lstat().st_uid != os.getuid()]


def test_chapters_three_levels_down_share_the_lab_data(study: Path) -> None:
    chapter = study / "doc" / "d2l-zh" / "pytorch" / "chapter_x"
    chapter.mkdir(parents=True)
    (study / "doc" / "d2l-zh" / "tensorflow" / "chapter_x").mkdir(parents=True)
    (study / ".vscode").mkdir()
    (study / "fastbook").mkdir()
    raw = study / "data" / RAW
    raw.parent.mkdir(parents=True)
    raw.write_bytes(b"the learner's copy")
    script = ("set -e; cd doc/d2l-zh/pytorch/chapter_x; cat ../data/" + RAW + "; echo;"
              " printf 'NumRooms,Price\\n' > ../data/house_tiny.csv; touch ../beside.ipynb")
    proc = labctl("run", "tiny", "--user", "--src", ".", "--", "bash", "-c", script,
                  cwd=study, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the learner's copy" in proc.stdout  # read from the lab's data/, no download
    made = study / "data" / "house_tiny.csv"
    assert made.read_text() == "NumRooms,Price\n"
    assert made.stat().st_uid == os.getuid()
    assert (study / "doc" / "d2l-zh" / "pytorch" / "beside.ipynb").exists()
    for fw in ("pytorch", "tensorflow"):  # the mount points: made by labctl, left empty
        own = study / "doc" / "d2l-zh" / fw / "data"
        assert own.is_dir() and list(own.iterdir()) == []
    assert "note: made empty folders" in proc.stderr and "pytorch/data" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _not_root_owned(study) == []
    again = labctl("run", "tiny", "--user", "--src", ".", "--", "true", cwd=study,
                   timeout=600)
    assert again.returncode == 0, again.stderr
    assert "note: made empty folders" not in again.stderr  # said once


def _exec(name: str, script: str) -> subprocess.CompletedProcess[str]:
    who = f"{os.getuid()}:{os.getgid()}"
    return subprocess.run(["docker", "exec", "-u", who, name, "bash", "-c", script],
                          capture_output=True, text=True, timeout=60)


def test_a_book_root_is_live_and_the_learners_at_every_level(study: Path,
                                                             tmp_path: Path) -> None:
    book = tmp_path / "d2l-zh"
    (book / "chapter_intro").mkdir(parents=True)
    (book / "pytorch" / "chapter_preliminaries").mkdir(parents=True)
    (book / "README.md").write_text("# d2l-zh")
    started = labctl("run", "tiny", "--user", "-d", "--json", "--src", str(book), "--",
                     "sleep", "300", cwd=study, timeout=600)
    name = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        name = json.loads(started.stdout)["container"]
        # Made on the host while the lab runs: seen inside, at the root and by the chapters.
        (book / "new-at-root.txt").write_text("x")
        (book / "pytorch" / "new-beside.txt").write_text("x")
        (book / "pytorch" / "chapter_new").mkdir()
        seen = _exec(name, "ls /workspace/d2l-zh; ls /workspace/d2l-zh/pytorch")
        assert seen.returncode == 0, seen.stderr
        for entry in ("new-at-root.txt", "new-beside.txt", "chapter_new"):
            assert entry in seen.stdout.split(), seen.stdout
        # The learner makes a file and a folder at every level, from inside.
        levels = ["", "/pytorch", "/pytorch/chapter_preliminaries"]
        script = "set -e; " + "; ".join(
            f"touch /workspace/d2l-zh{lv}/made.txt; mkdir /workspace/d2l-zh{lv}/made-dir"
            for lv in levels) + "; cd /workspace/d2l-zh/pytorch/chapter_preliminaries;" \
            " touch ../data/from-chapter.txt"
        made = _exec(name, script)
        assert made.returncode == 0, made.stderr
        for lv in levels:
            for entry in ("made.txt", "made-dir"):
                st = (book / lv.lstrip("/") / entry).stat()
                assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), (lv, entry)
        assert (study / "data" / "from-chapter.txt").stat().st_uid == os.getuid()
        assert list((book / "pytorch" / "data").iterdir()) == []
        assert _not_root_owned(book) == []
    finally:
        if name:
            labctl("stop", name, cwd=study, timeout=120)
