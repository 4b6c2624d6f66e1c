"""The shipped labs, built from this repository's specs and proven by their own checks.

d2l runs on every test run; fastai, yolo-cpu and yolo-gpu with --slow.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import requests
from conftest import REPO, TAG_PREFIX, labctl

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def shipped_lab(docker_client, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labs") / "lab"
    shutil.copytree(REPO / "images", root / "images")
    shutil.copy(REPO / "volumes.yaml", root / "volumes.yaml")
    (root / "labctl.yaml").write_text(f"tag_prefix: {TAG_PREFIX}\n")
    return root


def build_and_check(lab: Path, name: str, docker_client) -> None:
    t0 = time.monotonic()
    built = labctl("build", name, "--progress", "plain", cwd=lab, timeout=3600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    size = docker_client.images.get(f"{TAG_PREFIX}{name}:latest").attrs["Size"]
    print(f"\n{name}: built in {time.monotonic() - t0:.0f}s, {size / 1e9:.2f} GB")
    checked = labctl("check", name, "--json", cwd=lab, timeout=3600)
    results = json.loads(checked.stdout or "[]")
    failed = {r["name"]: r["output"][-3000:] for r in results if r["status"] != "pass"}
    assert checked.returncode == 0 and results and not failed, (failed, checked.stderr)
    for r in results:
        print(f"  check {r['name']}: {r['status']} in {r['seconds']:.0f}s")
    # Everything the checks wrote into the shared folders belongs to the user.
    import os

    for folder in ("data", "cache", "models", "ultralytics"):
        for p in (lab / folder).rglob("*") if (lab / folder).exists() else []:
            assert p.lstat().st_uid == os.getuid(), p
    # The checks' scratch folders are gone (.labctl keeps only its own .gitignore and tokens).
    assert not [p for p in (lab / ".labctl").glob("check-*")]


def test_d2l_lab_builds_checks_and_opens_jupyter(shipped_lab: Path, docker_client) -> None:
    build_and_check(shipped_lab, "d2l", docker_client)
    book = shipped_lab.parent / "d2l-zh"
    (book / "chapter_preliminaries").mkdir(parents=True)
    started = labctl("run", "d2l", "--user", "-d", "--src", str(book), cwd=shipped_lab,
                     timeout=600)
    try:
        assert started.returncode == 0, started.stderr
        m = re.search(r"http://127\.0\.0\.1:(\d+)/lab\?token=(\w+)", started.stderr)
        assert m, started.stderr
        api = f"http://127.0.0.1:{m[1]}/api/contents"
        auth = {"Authorization": f"token {m[2]}"}
        top = requests.get(api, headers=auth, timeout=10).json()
        assert "d2l-zh" in {c["name"] for c in top["content"]}
        inside = requests.get(f"{api}/d2l-zh", headers=auth, timeout=10).json()
        assert {"chapter_preliminaries", "data"} <= {c["name"] for c in inside["content"]}
    finally:  # only this test's lab: a learner's own labs keep running
        ours = [r["name"] for r in json.loads(labctl("ps", "--json", cwd=shipped_lab).stdout)
                if r["lab"] == str(shipped_lab)]
        labctl("stop", *ours, cwd=shipped_lab)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fastai", "yolo-cpu", "yolo-gpu"])
def test_slow_labs(shipped_lab: Path, docker_client, name: str) -> None:
    build_and_check(shipped_lab, name, docker_client)
