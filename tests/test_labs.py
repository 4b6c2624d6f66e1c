"""The shipped labs, built from this repository's specs and proven by their own checks.

d2l runs on every test run; fastai, yolo-cpu, yolo-gpu, yolov5, tf and tf-gpu with --slow.
"""

from __future__ import annotations

import json
import os
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


def build_and_check(lab: Path, name: str, docker_client) -> list[dict]:
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
    for folder in ("data", "cache", "models", "ultralytics"):
        for p in (lab / folder).rglob("*") if (lab / folder).exists() else []:
            assert p.lstat().st_uid == os.getuid(), p
    # The checks' scratch folders are gone (.labctl keeps only its own .gitignore and tokens).
    assert not [p for p in (lab / ".labctl").glob("check-*")]
    return results


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


def _idx(kind: int, shape: tuple[int, ...], data: bytes) -> bytes:
    """An IDX file (the format of MNIST and Fashion-MNIST): magic, dimensions, data."""
    head = bytes([0, 0, 8, kind]) + b"".join(n.to_bytes(4, "big") for n in shape)
    return head + data


def _fashion_standin(folder: Path) -> dict[str, str]:
    """Synthetic Fashion-MNIST files (200 train, 50 test): the names torchvision looks for,
    gzipped; their md5s for the test's datasets.yaml."""
    import gzip
    import hashlib
    import random

    rng = random.Random(0)
    folder.mkdir(parents=True)
    md5 = {}
    for split, n in (("train", 200), ("t10k", 50)):
        labels = bytes(rng.randrange(10) for _ in range(n))
        images = bytes(rng.randrange(256) for _ in range(n * 28 * 28))
        for name, raw in ((f"{split}-images-idx3-ubyte", _idx(3, (n, 28, 28), images)),
                          (f"{split}-labels-idx1-ubyte", _idx(1, (n,), labels))):
            data = gzip.compress(raw, mtime=0)
            (folder / f"{name}.gz").write_bytes(data)
            md5[f"{name}.gz"] = hashlib.md5(data).hexdigest()
    return md5


def test_d2l_book_chapters_run_offline_with_imported_data(shipped_lab: Path, tmp_path: Path
                                                         ) -> None:
    import hashlib

    import yaml

    md5 = _fashion_standin(tmp_path / "fashion")
    standin = tmp_path / "labctl-standin.csv"
    standin.write_text("a,b\n1,2\n3,4\n5,6\n")
    sha1 = hashlib.sha1(standin.read_bytes()).hexdigest()
    base = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    entries = {
        "fashion-mnist": {  # the stand-in takes the shipped entry's name, and its places
            "description": "Fashion-MNIST stand-in", "volume": "data", "files": [
                {"urls": [base + f], "to": f"FashionMNIST/raw/{f}", "md5": m,
                 "extract": "gunzip"} for f, m in md5.items()]},
        "d2l-standin": {"description": "a d2l.download stand-in", "volume": "data", "files": [
            {"urls": ["http://d2l-data.s3-accelerate.amazonaws.com/labctl-standin.csv"],
             "to": "labctl-standin.csv", "sha1": sha1}]},
    }
    (shipped_lab / "datasets.yaml").write_text(yaml.safe_dump({"entries": entries}))
    try:
        for name, src in (("fashion-mnist", tmp_path / "fashion"), ("d2l-standin", standin)):
            imported = labctl("data", "import", name, str(src), cwd=shipped_lab)
            assert imported.returncode == 0, imported.stderr
        raw = shipped_lab / "data" / "FashionMNIST" / "raw"
        assert (raw / "train-images-idx3-ubyte").is_file()  # unpacked where torchvision looks
        for p in [raw, *raw.iterdir()]:
            assert p.stat().st_uid == os.getuid(), p
        checks = shipped_lab / "images" / "checks"
        shutil.copy(REPO / "tests" / "fixtures" / "books" / "d2l_chapters.py", checks)
        (checks / "standin.sha1").write_text(sha1)
        (shipped_lab / "images" / "d2l-book.yaml").write_text(
            "extends: d2l\nchecks:\n  - {name: chapters, script: checks/d2l_chapters.py,"
            " timeout: 900}\n")
        built = labctl("build", "d2l-book", cwd=shipped_lab, timeout=1800)
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr
        checked = labctl("check", "d2l-book", "--json", cwd=shipped_lab, timeout=1800)
        results = json.loads(checked.stdout or "[]")
        assert checked.returncode == 0 and results[0]["status"] == "pass", \
            results[0]["output"][-4000:] if results else checked.stderr
    finally:
        (shipped_lab / "datasets.yaml").unlink(missing_ok=True)
        (shipped_lab / "images" / "d2l-book.yaml").unlink(missing_ok=True)


def test_the_book_at_any_level_shares_its_data(shipped_lab: Path, tmp_path: Path) -> None:
    book = tmp_path / "d2l-zh"
    for ch in ("chapter_preliminaries", "chapter_linear-networks"):
        (book / "pytorch" / ch).mkdir(parents=True)
    (book / "pytorch" / "img").mkdir()
    (book / "README.md").write_text("# d2l-zh")
    before, made = sorted(book.rglob("*")), []
    for src, data_path in ((book, "d2l-zh/pytorch/data"), (book / "pytorch", "pytorch/data")):
        started = labctl("run", "d2l", "--user", "-d", "--json", "--src", str(src),
                         cwd=shipped_lab, timeout=600)
        try:
            assert started.returncode == 0, started.stderr
            info = json.loads(started.stdout)
            token = Path(info["token_file"]).read_text()
            base = info["url"].split("/lab?")[0]
            auth = {"Authorization": f"token {token}"}
            name = f"from-jupyter-{src.name}.txt"
            put = requests.put(f"{base}/api/contents/{data_path}/{name}", headers=auth,
                               json={"type": "file", "format": "text", "content": "x"},
                               timeout=10)
            assert put.status_code in (200, 201), put.text
            assert (shipped_lab / "data" / name).read_text() == "x"  # the lab's data folder
            assert (shipped_lab / "data" / name).stat().st_uid == os.getuid()
            # "New file" at the folder's own level: the learner's, in their folder
            put = requests.put(f"{base}/api/contents/{src.name}/{name}", headers=auth,
                               json={"type": "file", "format": "text", "content": "y"},
                               timeout=10)
            assert put.status_code in (200, 201), put.text
            assert (src / name).stat().st_uid == os.getuid()
            made.append(src / name)
        finally:
            labctl("stop", "--all", cwd=shipped_lab)
    # labctl made only the empty folder the lab's data/ is mounted on, as the learner
    assert sorted(book.rglob("*")) == sorted([*before, *made, book / "pytorch" / "data"])
    assert list((book / "pytorch" / "data").iterdir()) == []
    assert (book / "pytorch" / "data").stat().st_uid == os.getuid()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fastai", "yolo-cpu", "yolo-gpu", "yolov5", "tf", "tf-gpu",
                                  "genai"])
def test_slow_labs(shipped_lab: Path, docker_client, name: str) -> None:
    results = build_and_check(shipped_lab, name, docker_client)
    if name == "tf-gpu":  # the wheel's own build facts are the row labctl's verdicts use
        from labctl.gpu import compat

        out = next(r["output"] for r in results if r["name"] == "tf-build-info")
        info = json.loads(out.split("LABCTL_TF_BUILD ", 1)[1].splitlines()[0])
        row = compat.tf_build(info["tensorflow"])
        assert row is not None, f"add tensorflow {info['tensorflow']} to tables/tf_wheels.yaml"
        assert (row.cuda, row.cudnn, row.archs) == (
            info["cuda"], info["cudnn"], ",".join(info["archs"])), (row, info)


def _check_spec(lab: Path, name: str, parent: str, command: str) -> dict:
    """Build NAME (PARENT with one offline check running COMMAND) and run its check."""
    (lab / "images" / f"{name}.yaml").write_text(
        f"extends: {parent}\nchecks:\n  - name: book\n    run: {json.dumps(command)}\n"
        "    timeout: 900\n")
    built = labctl("build", name, cwd=lab, timeout=3600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr
    checked = labctl("check", name, "--json", cwd=lab, timeout=1800)
    results = json.loads(checked.stdout or "[]")
    assert results, checked.stderr
    return results[0]


@pytest.mark.slow
def test_fastai_untar_data_finds_an_imported_dataset(shipped_lab: Path, tmp_path: Path) -> None:
    import hashlib
    import io
    import tarfile

    import yaml

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("labctl_standin/readme.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    tgz = tmp_path / "labctl_standin.tgz"
    tgz.write_bytes(buf.getvalue())
    url = "https://s3.amazonaws.com/fast-ai-sample/labctl_standin.tgz"
    (shipped_lab / "datasets.yaml").write_text(yaml.safe_dump({"entries": {"fastai-standin": {
        "description": "a stand-in at a fastai URL", "volume": "cache", "files": [
            {"urls": [url], "to": "fastai/archive/labctl_standin.tgz",
             "md5": hashlib.md5(tgz.read_bytes()).hexdigest()}]}}}))
    try:
        assert labctl("data", "import", "fastai-standin", str(tgz),
                      cwd=shipped_lab).returncode == 0
        r = _check_spec(shipped_lab, "fastai-book", "fastai",
                        "python -c \"from fastai.data.external import untar_data; "
                        f"p = untar_data('{url}'); print(p, (p / 'readme.txt').read_text())\"")
        assert r["status"] == "pass" and "labctl_standin hi" in r["output"], r["output"][-3000:]
    finally:
        (shipped_lab / "datasets.yaml").unlink(missing_ok=True)
        (shipped_lab / "images" / "fastai-book.yaml").unlink(missing_ok=True)


@pytest.mark.slow
def test_yolo_finds_imported_weights(shipped_lab: Path) -> None:
    # The lab, built here or by test_slow_labs[yolo-cpu] before ("current" then).
    built = labctl("build", "yolo-cpu", cwd=shipped_lab, timeout=3600)
    assert built.returncode == 0, built.stderr[-3000:]
    # A checkpoint of the YOLO11n architecture (random weights: the real file is on GitHub).
    made = labctl("run", "yolo-cpu", "--user", "--", "python", "-c",
                  "import torch; from ultralytics import YOLO; m = YOLO('yolo11n.yaml');"
                  " torch.save({'model': m.model, 'train_args': {}},"
                  " '/workspace/work/yolo11n.pt')", cwd=shipped_lab, timeout=600)
    assert made.returncode == 0, made.stderr
    weights = shipped_lab / "work" / "yolo11n.pt"
    imported = labctl("data", "import", "yolo11n", str(weights), cwd=shipped_lab)
    assert imported.returncode == 0, imported.stderr
    assert (shipped_lab / "ultralytics" / "weights" / "yolo11n.pt").is_file()
    try:
        r = _check_spec(shipped_lab, "yolo-book", "yolo-cpu",
                        "cd /tmp && python -c \"from ultralytics import YOLO; "
                        "from ultralytics.utils import ASSETS; m = YOLO('yolo11n.pt'); "
                        "print('found', m.ckpt_path); m.predict(ASSETS / 'bus.jpg', imgsz=320,"
                        " device='cpu', verbose=False)\"")
        assert r["status"] == "pass" and "/ultralytics/weights/yolo11n.pt" in r["output"], \
            r["output"][-3000:]
    finally:
        (shipped_lab / "images" / "yolo-book.yaml").unlink(missing_ok=True)


def _devcontainer_cli() -> str:
    import sys

    exe = shutil.which("devcontainer", path=str(Path(sys.executable).parent))
    if not exe:
        pytest.fail("the Dev Containers CLI is missing: ./scripts/test.sh installs it")
    return exe


def test_vscode_dev_containers_open_the_lab_as_you(shipped_lab: Path, tmp_path: Path,
                                                  docker_client) -> None:
    import subprocess

    work = tmp_path / "my-project"
    work.mkdir()
    made = labctl("devcontainer", "d2l", "--src", str(work), "--json", cwd=shipped_lab)
    assert made.returncode == 0, made.stderr
    config = Path(json.loads(made.stdout)["file"])
    (config.parent / "devcontainer.json").write_text(  # the learner's own addition is kept
        config.read_text().replace('"name"', '"postCreateCommand": "true",\n  "name"', 1))
    again = json.loads(labctl("devcontainer", "d2l", "--src", str(work), "--json",
                              cwd=shipped_lab, check=True).stdout)
    assert '"postCreateCommand": "true"' in config.read_text() and again["changes"] == []
    cli = _devcontainer_cli()
    args = ["--workspace-folder", str(work), "--config", str(config)]
    try:
        up = subprocess.run([cli, "up", *args], capture_output=True, text=True, timeout=900)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
        run = subprocess.run(
            [cli, "exec", *args, "bash", "-c", "id -u; id -g; touch from-vscode;"
             " echo shared > /data/from-vscode.txt; python -c 'from d2l import torch;"
             " print(\"d2l\", torch.__name__)'"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        lines = run.stdout.split()
        assert lines[:2] == [str(os.getuid()), str(os.getgid())], run.stdout
        assert "d2l" in lines and "d2l.torch" in lines
        st = (work / "from-vscode").stat()
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert (shipped_lab / "data" / "from-vscode.txt").read_text() == "shared\n"
    finally:
        for c in docker_client.containers.list(
                all=True, filters={"label": f"devcontainer.local_folder={work}"}):
            c.remove(force=True)
        for img in docker_client.images.list():  # the CLI's uid-update image, vsc-<folder>-*
            if any(t.startswith(f"vsc-{work.name}-") for t in img.tags):
                docker_client.images.remove(img.id, force=True)
