"""`labctl data`: the catalogue, downloads against a local HTTP server the test starts
(resume, mirrors, checksums), imports, unpacking, and scans of notebooks."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import write_lab

from labctl.config.lab import load_lab
from labctl.data import catalogue, store
from labctl.data.scan import scan
from labctl.errors import LabError

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    drop_first: int  # bytes after which the first GET of a file is cut off (0: never)
    log: list[tuple[str, str, int]]  # (path, Range header, bytes sent)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        data = self.server.files.get(self.path)
        rng = self.headers.get("Range", "")
        if data is None:
            self.send_error(404)
            self.server.log.append((self.path, rng, 0))
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        body = data[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        first = not any(p == self.path for p, _, _ in self.server.log)
        if first and self.server.drop_first:
            body = body[: self.server.drop_first]
        self.wfile.write(body)
        self.server.log.append((self.path, rng, len(body)))
        if first and self.server.drop_first:
            self.wfile.flush()
            self.connection.shutdown(2)  # cut off mid-file


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.drop_first, srv.log = {}, 0, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def _url(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def _lab(tmp_path: Path, entries: dict, settings: str = "") -> Path:
    root = write_lab(tmp_path / "lab", {}, settings)
    (root / "datasets.yaml").write_text(yaml.safe_dump({"entries": entries}))
    return root


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_proxy")
           and not k.endswith("_PROXY")}
    return subprocess.run([sys.executable, "-m", "labctl", "data", *args], cwd=root,
                          capture_output=True, text=True, timeout=120, env=env)


def _entry(urls: list[str], **check: object) -> dict:
    f = {"urls": urls, "to": "test/payload.bin", **check}
    return {"description": "a test payload", "volume": "data", "files": [f]}


def test_an_interrupted_download_resumes_and_no_byte_is_fetched_twice(server, tmp_path):
    server.files["/payload.bin"] = PAYLOAD
    server.drop_first = 1 << 20
    sha1 = hashlib.sha1(PAYLOAD).hexdigest()
    root = _lab(tmp_path, {"payload": _entry([_url(server, "/payload.bin")], sha1=sha1)})
    proc = _cli(root, "get", "payload", "--json")
    assert proc.returncode == 0, proc.stderr
    assert (root / "data" / "test" / "payload.bin").read_bytes() == PAYLOAD
    sent = [n for p, _, n in server.log if p == "/payload.bin"]
    ranges = [r for p, r, _ in server.log if p == "/payload.bin"]
    assert len(sent) == 2 and ranges[1] == f"bytes={server.drop_first}-"
    assert sum(sent) == len(PAYLOAD)  # no byte twice
    assert not (root / "data" / store.PARTIAL / "payload" / "payload.bin.part").exists()
    listed = json.loads(_cli(root, "list", "payload", "--json", "--verify").stdout)
    assert listed[0]["state"] == "present"


def test_a_lab_mirror_is_tried_first_and_a_dead_url_is_passed_over(server, tmp_path):
    server.files["/mirror/payload.bin"] = PAYLOAD
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    official = _url(server, "/official/payload.bin")  # not there: 404
    dead = "http://127.0.0.1:9/"  # nothing listens on the discard port
    settings = (f"data_mirrors:\n  - {{from: '{_url(server, '/official/')}', to: '{dead}'}}\n"
                f"  - {{from: '{_url(server, '/official/')}', to: '{_url(server, '/mirror/')}'}}\n")
    root = _lab(tmp_path, {"payload": _entry([official], md5=md5)}, settings)
    proc = _cli(root, "get", "payload")
    assert proc.returncode == 0, proc.stderr
    assert [p for p, _, _ in server.log] == ["/mirror/payload.bin"]  # dead mirror, then this
    assert (root / "data" / "test" / "payload.bin").read_bytes() == PAYLOAD


def test_a_wrong_checksum_is_refused_and_nothing_is_put_in_place(server, tmp_path):
    server.files["/payload.bin"] = PAYLOAD
    root = _lab(tmp_path, {"payload": _entry([_url(server, "/payload.bin")],
                                             sha1="0" * 40)})
    proc = _cli(root, "get", "payload")
    assert proc.returncode == 1 and "sha1" in proc.stderr and "Traceback" not in proc.stderr
    assert "labctl data import payload" in proc.stderr
    assert not (root / "data" / "test" / "payload.bin").exists()
    assert not list((root / "data").rglob("*.part"))


def test_import_verifies_and_places_a_file_or_a_folder(tmp_path):
    good = tmp_path / "dl" / "payload.bin"
    good.parent.mkdir()
    good.write_bytes(PAYLOAD)
    root = _lab(tmp_path, {"payload": _entry(["http://example.invalid/payload.bin"],
                                             sha256=hashlib.sha256(PAYLOAD).hexdigest())})
    bad = tmp_path / "payload-bad.bin"
    bad.write_bytes(PAYLOAD[:-1])
    proc = _cli(root, "import", "payload", str(bad))
    assert proc.returncode == 1 and "nothing was put in place" in proc.stderr
    assert not (root / "data" / "test" / "payload.bin").exists()
    proc = _cli(root, "import", "payload", str(tmp_path / "dl"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["placed"] == [str(root / "data" / "test" / "payload.bin")]
    assert good.exists()  # imported by copy: the learner's file stays


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archives_are_unpacked_where_the_library_looks(tmp_path):
    gz = gzip.compress(b"idx-bytes")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("toy/images/a.jpg", b"jpg")
    entries = {
        "gz": {"description": "g", "volume": "data", "files": [
            {"urls": ["http://x.invalid/t.gz"], "to": "raw/t.gz", "extract": "gunzip",
             "md5": hashlib.md5(gz).hexdigest()}]},
        "zip": {"description": "z", "volume": "ultralytics", "files": [
            {"urls": ["http://x.invalid/toy.zip"], "to": "datasets/toy.zip",
             "extract": "unzip", "into": "datasets"}]},
        "tgz": {"description": "t", "volume": "cache", "files": [
            {"urls": ["http://x.invalid/w.tgz"], "to": "fastai/archive/w.tgz",
             "extract": "untar", "into": "fastai/models"}]},
    }
    root = _lab(tmp_path, entries)
    for name, data, fname in (("gz", gz, "t.gz"), ("zip", zipped.getvalue(), "toy.zip"),
                              ("tgz", _tgz({"w/w.pth": b"w"}), "w.tgz")):
        (tmp_path / fname).write_bytes(data)
        assert _cli(root, "import", name, str(tmp_path / fname)).returncode == 0
    assert (root / "data" / "raw" / "t").read_bytes() == b"idx-bytes"
    assert (root / "ultralytics" / "datasets" / "toy" / "images" / "a.jpg").exists()
    assert (root / "cache" / "fastai" / "models" / "w" / "w.pth").exists()


def test_an_archive_that_escapes_its_folder_is_refused(tmp_path):
    root = _lab(tmp_path, {"evil": {"description": "e", "volume": "cache", "files": [
        {"urls": ["http://x.invalid/e.tgz"], "to": "fastai/archive/e.tgz", "extract": "untar",
         "into": "fastai/data"}]}})
    (tmp_path / "e.tgz").write_bytes(_tgz({"../../../outside.txt": b"x"}))
    proc = _cli(root, "import", "evil", str(tmp_path / "e.tgz"))
    assert proc.returncode == 1 and "outside its folder" in proc.stderr
    assert not (tmp_path / "outside.txt").exists() and not (root / "outside.txt").exists()


def test_scan_finds_what_the_book_uses(tmp_path):
    book = tmp_path / "d2l-zh" / "pytorch"
    (book / "chapter_linear-networks").mkdir(parents=True)
    (book / "chapter_optimization").mkdir()
    nb = {"cells": [{"cell_type": "markdown", "source": ["load_data_voc is mentioned only"]},
                    {"cell_type": "code", "source": ["train_iter, test_iter = "
                                                     "d2l.load_data_fashion_mnist(256)"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (book / "chapter_linear-networks" / "softmax.ipynb").write_text(json.dumps(nb))
    (book / "chapter_optimization" / "sgd.py").write_text("data = d2l.get_data_ch11(10)\n")
    root = write_lab(tmp_path / "lab", {})
    cat = catalogue.load(root)
    used = scan(tmp_path / "d2l-zh", cat)
    assert set(used) == {"fashion-mnist", "d2l-airfoil"}
    proc = _cli(root, "scan", str(tmp_path / "d2l-zh"), "--json")
    out = json.loads(proc.stdout)
    assert set(out["missing"]) == {"fashion-mnist", "d2l-airfoil"}


def test_the_shipped_catalogue_loads_and_a_bad_lab_file_is_one_error(tmp_path):
    cat = catalogue.shipped()
    assert {"fashion-mnist", "d2l-airfoil", "d2l-kaggle-house-train", "d2l-time-machine",
            "fastai-pets", "fastai-mnist-sample", "fastai-adult-sample", "fastai-ml-sample",
            "fastai-camvid-tiny", "fastai-imdb", "fastai-wt103-fwd", "torchvision-resnet18",
            "torchvision-resnet34", "torchvision-resnet50", "yolo11n", "coco8"} <= set(cat.entries)
    # Every file is checked as its library checks it; only where the library checks nothing
    # (fastai's AWD_LSTM weights, Ultralytics' datasets) does labctl have nothing to check.
    unchecked = {n for n, e in cat.entries.items() for f in e.files
                 if not (f.verifiable or f.min_size)}
    assert unchecked == {"fastai-wt103-fwd", "coco8"}
    root = _lab(tmp_path, {"x": {"description": "x", "volume": "data",
                                 "files": [{"urls": ["ftp://nope"], "to": "../x"}]}})
    with pytest.raises(LabError) as info:
        catalogue.load(root)
    assert info.value.file == str(root / "datasets.yaml") and len(info.value.details) == 2
    lab = load_lab(str(write_lab(tmp_path / "two", {})), environ={})
    assert store.volume_root(lab, "fashion-mnist", cat.entries["fashion-mnist"]) == \
        lab.root / "data"
