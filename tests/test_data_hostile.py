"""`labctl data` against a hostile lab datasets.yaml, hostile archives and hostile download
servers (a local HTTP server the test starts on 127.0.0.1): nothing is written outside the
entry's volume folder, no device, FIFO or setuid file is made, a server cannot fill the
disk or hold a download forever, an unchecked file is never resumed or called present,
and a full disk or a broken file is one clear error, never a traceback."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, write_lab
from hostile_archives import _info, _tar, check

from labctl.config.lab import load_lab
from labctl.data import catalogue, fetch, store
from labctl.errors import LabError

PAYLOAD = os.urandom(300_000)
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


# --- a download server that misbehaves on request ---------------------------------------
class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]
    mode: str  # "", "endless", "trickle", "liar" (Content-Length larger than the file)
    log: list[tuple[str, str]]  # (path, Range header)
    sent: int  # bytes of body sent, all requests together
    stop: threading.Event


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # no Content-Length: the body ends when the server closes

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        rng = self.headers.get("Range", "")
        srv.log.append((self.path, rng))
        try:
            if srv.mode == "endless":  # 64 MiB at most, so a test without the limit ends
                self.send_response(200)
                self.end_headers()
                block = b"\0" * 65536
                for _ in range(1024):
                    self.wfile.write(block)
                    srv.sent += len(block)
            elif srv.mode == "trickle":  # a byte every 50 ms, for at most 20 s
                self.send_response(200)
                self.end_headers()
                for _ in range(400):
                    if srv.stop.is_set():
                        return
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    srv.sent += 1
                    time.sleep(0.05)
            elif srv.mode == "liar":
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 40))
                self.end_headers()
                self.wfile.write(b"\0" * 1000)
            else:
                data = srv.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])
                srv.sent += len(data) - start
        except (BrokenPipeError, ConnectionResetError):
            pass  # labctl hung up: what the limits are for


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.mode, srv.log, srv.sent, srv.stop = {}, "", [], 0, threading.Event()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.stop.set()
    srv.shutdown()


def _url(srv: _Server, path: str = "/payload.bin") -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def _lab(tmp_path: Path, entries: dict) -> Path:
    root = write_lab(tmp_path / "lab", {})
    (root / "datasets.yaml").write_text(yaml.safe_dump({"entries": entries}))
    return root


def _entry(urls: list[str], volume: str = "data", **check: object) -> dict:
    return {"description": "a test payload", "volume": volume,
            "files": [{"urls": urls, "to": "test/payload.bin", **check}]}


def _cli(root: Path, *args: str, wrap: list[str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([*(wrap or []), sys.executable, "-m", "labctl", "data", *args],
                          cwd=root, capture_output=True, text=True, timeout=120, env=env)


def _fetch(root: Path, name: str = "payload") -> Path:
    lab = load_lab(str(root), environ={})
    cat = catalogue.load(root)
    e = cat.entries[name]
    return fetch.fetch_file(lab, name, e, e.files[0], progress=lambda *a: None)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Limits of seconds, not minutes, and one retry at once."""
    monkeypatch.setattr(fetch, "RETRY_DELAYS", (0.0,))
    monkeypatch.setattr(fetch, "RATE_WINDOW", 1.0)
    monkeypatch.setattr(fetch, "TIMEOUT", (5.0, 5.0))


# --- 1. archives -----------------------------------------------------------------------
def test_hostile_archives_make_no_device_fifo_setuid_file_or_link(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As on Debian bookworm's Python 3.11.2: tarfile without its extraction filter.
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    assert check(tmp_path) == []


@pytest.mark.root
def test_as_root_with_the_learners_system_python_hostile_archives_are_refused(
        tmp_path: Path) -> None:
    python = os.environ.get("LABCTL_LEARNER_PYTHON")
    if os.geteuid() != 0 or not python:
        pytest.skip("needs root and LABCTL_LEARNER_PYTHON (scripts/test.sh sets both)")
    proc = subprocess.run([python, str(REPO / "tests" / "hostile_archives.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    report = json.loads(proc.stdout or "{}") if proc.stdout.startswith("{") else {}
    assert proc.returncode == 0 and report.get("uid") == 0, proc.stdout + proc.stderr
    assert report["problems"] == []


def test_a_refused_archive_is_not_placed_and_does_not_count_as_present(tmp_path: Path) -> None:
    archive = tmp_path / "w.tgz"
    archive.write_bytes(_tar([(_info("w/ok.pth"), b"w"),
                              (_info("w/null", tarfile.CHRTYPE, major=1, minor=3), b"")]))
    root = _lab(tmp_path, {"w": {"description": "w", "volume": "cache", "files": [
        {"urls": ["http://x.invalid/w.tgz"], "to": "fastai/archive/w.tgz",
         "extract": "untar", "into": "fastai/models"}]}})
    proc = _cli(root, "import", "w", str(archive))
    assert proc.returncode == 1 and "a device" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (root / "cache" / "fastai" / "archive" / "w.tgz").exists()
    assert not (root / "cache" / "fastai" / "models" / "w").exists()
    listed = json.loads(_cli(root, "list", "w", "--json").stdout)
    assert listed[0]["state"] == "missing"
    broken = tmp_path / "b.tgz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    proc = _cli(root, "import", "w", str(broken))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr


# --- 2. servers that send too much, or too slowly --------------------------------------
def test_an_endless_response_stops_at_the_declared_size(server: _Server, tmp_path: Path,
                                                       quick: None) -> None:
    server.mode = "endless"
    root = _lab(tmp_path, {"payload": _entry([_url(server)], size=8192, sha256=SHA256)})
    started = time.monotonic()
    with pytest.raises(LabError) as info:
        _fetch(root)
    assert "more than the 8192 bytes" in str(info.value)
    assert time.monotonic() - started < 20
    assert len(server.log) == 1  # that URL is given up: no retry of a wrong file
    assert server.sent < 48 << 20, server.sent  # not all 64 MiB (socket buffers aside)
    assert not (root / "data" / "test" / "payload.bin").exists()
    assert not list((root / "data").rglob("*.part"))


def test_an_unsized_entry_stops_at_the_cap_and_a_lying_length_is_refused(
        server: _Server, tmp_path: Path, quick: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "MAX_UNSIZED", 100_000)
    server.mode = "endless"
    root = _lab(tmp_path, {"payload": _entry([_url(server)], sha256=SHA256)})
    with pytest.raises(LabError) as info:
        _fetch(root)
    assert "more than the 100000 bytes" in str(info.value) and server.sent < 48 << 20
    server.mode, server.sent = "liar", 0
    with pytest.raises(LabError) as info:
        _fetch(root)
    assert "announces 1099511627776 bytes" in str(info.value)
    assert not (root / "data" / "test" / "payload.bin").exists()


def test_a_trickling_server_is_cut_off(server: _Server, tmp_path: Path, quick: None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server.mode = "trickle"  # 20 bytes a second, each read well within the read timeout
    root = _lab(tmp_path, {"payload": _entry([_url(server)], sha256=SHA256)})
    started = time.monotonic()
    with pytest.raises(LabError) as info:
        _fetch(root)
    took = time.monotonic() - started
    assert "TooSlow" in str(info.value) and took < 8, (took, str(info.value))
    assert len(server.log) == 2  # two tries (quick: one retry), each cut off
    # A sized file also has a deadline: 1 s plus its size at a rate it cannot reach.
    monkeypatch.setattr(fetch, "MIN_RATE", 0)
    monkeypatch.setattr(fetch, "DEADLINE_BASE", 1.0)
    monkeypatch.setattr(fetch, "DEADLINE_RATE", 1 << 40)
    root = _lab(tmp_path / "sized", {"payload": _entry([_url(server)], size=len(PAYLOAD),
                                                       sha256=SHA256)})
    started = time.monotonic()
    with pytest.raises(LabError) as info:
        _fetch(root)
    assert "not done after" in str(info.value) and time.monotonic() - started < 8
    assert not (root / "data" / "test" / "payload.bin").exists()


# --- 3. entries without a checksum -----------------------------------------------------
def test_an_unchecked_file_is_never_resumed_and_only_labctls_own_counts(
        server: _Server, tmp_path: Path) -> None:
    server.files["/payload.bin"] = PAYLOAD
    root = _lab(tmp_path, {"payload": _entry([_url(server)], min_size=100_000)})
    part = root / "data" / store.PARTIAL / "payload" / "payload.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"TAMPERED" * 1000)  # a partial someone else left
    proc = _cli(root, "get", "payload")
    assert proc.returncode == 0, proc.stderr
    placed = root / "data" / "test" / "payload.bin"
    assert placed.read_bytes() == PAYLOAD and server.log == [("/payload.bin", "")]
    assert json.loads(_cli(root, "list", "payload", "--json", "--verify").stdout
                      )[0]["state"] == "present"
    # Changed after labctl placed it (same size): not present any more, and fetched again.
    placed.write_bytes(b"\0" * len(PAYLOAD))
    os.utime(placed, ns=(1, 1))
    listed = json.loads(_cli(root, "list", "payload", "--json").stdout)
    assert listed[0]["state"] == "unverified"
    assert _cli(root, "get", "payload").returncode == 0 and len(server.log) == 2
    assert placed.read_bytes() == PAYLOAD
    # The same bytes and mtime, but not what labctl recorded: --verify sees it.
    data = bytearray(PAYLOAD)
    data[-1] ^= 1
    before = placed.stat()
    placed.write_bytes(bytes(data))
    os.utime(placed, ns=(before.st_atime_ns, before.st_mtime_ns))
    listed = json.loads(_cli(root, "list", "payload", "--json", "--verify").stdout)
    assert listed[0]["state"] == "corrupt" and "labctl placed" in listed[0]["files"][0]["problem"]


def test_a_checked_file_the_library_fetched_itself_is_verified_not_fetched_again(
        server: _Server, tmp_path: Path) -> None:
    server.files["/payload.bin"] = PAYLOAD
    root = _lab(tmp_path, {"payload": _entry([_url(server)], sha256=SHA256)})
    placed = root / "data" / "test" / "payload.bin"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(PAYLOAD)  # as d2l or torchvision would, inside the container
    assert json.loads(_cli(root, "list", "payload", "--json").stdout)[0]["state"] == \
        "unverified"
    assert _cli(root, "get", "payload").returncode == 0 and server.log == []
    assert json.loads(_cli(root, "list", "payload", "--json").stdout)[0]["state"] == "present"


def test_the_shipped_unchecked_entries_are_the_known_ones() -> None:
    cat = catalogue.shipped()
    assert {n for n, e in cat.entries.items() if not all(f.verifiable for f in e.files)} == \
        {"fastai-wt103-fwd", "yolo11n", "yolov8n", "coco8"}


# --- 4. a full disk ----------------------------------------------------------------------
def _unshare(args: list[str]) -> bool:
    try:
        return subprocess.run(["unshare", *args, "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.parametrize("who", ["user", pytest.param("root", marks=pytest.mark.root)])
def test_a_full_disk_stops_at_once_naming_the_lab_folder(server: _Server, tmp_path: Path,
                                                         who: str) -> None:
    # A private mount namespace: a 1 MiB tmpfs over the lab's data folder, for one run.
    # As a user, in a user namespace of its own (where the host allows them).
    if who == "root" and os.geteuid() != 0:
        pytest.skip("the root run: scripts/test.sh runs it as root")
    ns = ["--mount"] if who == "root" else ["--user", "--map-root-user", "--mount"]
    if not _unshare(ns):
        pytest.skip(f"unshare {' '.join(ns)} is not allowed here: cannot make a small disk")
    server.files["/payload.bin"] = PAYLOAD * 8  # 2.4 MB, onto a 1 MiB disk
    sha = hashlib.sha256(PAYLOAD * 8).hexdigest()
    root = _lab(tmp_path, {"payload": _entry([_url(server)], sha256=sha)})
    data = root / "data"
    data.mkdir()
    wrap = ["unshare", *ns, "sh", "-c",
            f'mount -t tmpfs -o size=1m labctl-test "{data}" && exec "$@"', "sh"]
    started = time.monotonic()
    proc = _cli(root, "get", "payload", wrap=wrap)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    text = " ".join(proc.stderr.split())
    assert f"the disk that holds {data} is full" in text and f"df -h {data}" in text, text
    assert "docker system prune" not in text
    assert len(server.log) == 1 and time.monotonic() - started < 30  # no retry


# --- 5. nothing outside the volume folder ----------------------------------------------
@pytest.mark.parametrize("link", ["test", ".labctl-partial", "test/payload.bin"])
def test_a_link_in_the_volume_folder_does_not_lead_labctl_out(
        server: _Server, tmp_path: Path, link: str) -> None:
    server.files["/payload.bin"] = PAYLOAD
    root = _lab(tmp_path, {"payload": _entry([_url(server)], sha256=SHA256)})
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim" if link.endswith(".bin") else outside
    (root / "data" / link).parent.mkdir(parents=True)
    (root / "data" / link).symlink_to(target)
    proc = _cli(root, "get", "payload")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert list(outside.iterdir()) == []
    if link.endswith(".bin"):  # the link itself is replaced, never written through
        assert proc.returncode == 0 and (root / "data" / link).read_bytes() == PAYLOAD
        assert not (root / "data" / link).is_symlink()
    else:
        assert proc.returncode == 1 and "leads out of the volume folder" in proc.stderr


def test_an_archive_is_not_unpacked_through_a_link_out(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("w/w.pth")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"w"))
    (tmp_path / "w.tgz").write_bytes(buf.getvalue())
    root = _lab(tmp_path, {"w": {"description": "w", "volume": "cache", "files": [
        {"urls": ["http://x.invalid/w.tgz"], "to": "fastai/archive/w.tgz",
         "extract": "untar", "into": "fastai/models"}]}})
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "cache" / "fastai").mkdir(parents=True)
    (root / "cache" / "fastai" / "models").symlink_to(outside)
    proc = _cli(root, "import", "w", str(tmp_path / "w.tgz"))
    assert proc.returncode == 1 and "leads out of the volume folder" in proc.stderr
    assert list(outside.iterdir()) == []
    assert not (root / "cache" / "fastai" / "archive" / "w.tgz").exists()


@pytest.mark.parametrize("place", [{"to": "../outside.bin"}, {"to": "/tmp/outside.bin"},
                                   {"to": "a/../../outside.bin"},
                                   {"to": "x.tgz", "extract": "untar", "into": "../.."},
                                   {"to": "x.tgz", "extract": "untar", "into": "/etc"},
                                   {"to": "~/outside.bin"}])
def test_a_catalogue_path_out_of_the_volume_is_refused(tmp_path: Path, place: dict) -> None:
    root = write_lab(tmp_path / "lab", {})
    (root / "datasets.yaml").write_text(yaml.safe_dump({"entries": {"x": {
        "description": "x", "volume": "data",
        "files": [{"urls": ["http://x.invalid/x"], **place}]}}}))
    with pytest.raises(LabError) as info:
        catalogue.load(root)
    assert info.value.file == str(root / "datasets.yaml")
    assert "inside the folder" in str(info.value)
    if place["to"] == "../outside.bin":  # and the CLI says so, once
        proc = _cli(root, "list", "x")
        assert proc.returncode == 1 and "datasets.yaml" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


# --- 6. a broken datasets.yaml is one error naming it ---------------------------------
@pytest.mark.parametrize("text", [
    "entries:\n  x:\n    description: x\n    volume: data\n    files:\n"
    "      - {urls: ['http://x.invalid/x'], to: x, size: " + "9" * 5000 + "}\n",
    "1: 2\n",
    "entries:\n  1: {description: x}\n",
    "- a list\n- not a mapping\n",
    "just text\n",
    "entries: [1, 2]\n",
    "entries:\n  x: !!binary AAAA\n",
    "entries: {x: {description: x, volume: data, files: [{urls: [x], to: x, size: 1e999}]}}\n",
])
def test_a_broken_datasets_file_is_one_error_naming_it(tmp_path: Path, text: str) -> None:
    root = write_lab(tmp_path / "lab", {})
    (root / "datasets.yaml").write_text(text)
    with pytest.raises(LabError) as info:
        catalogue.load(root)
    assert str(root / "datasets.yaml") in str(info.value)
    if text.startswith(("entries:\n  x:\n", "1: 2")):  # and the CLI: one screen
        proc = _cli(root, "list")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "datasets.yaml" in proc.stderr


def test_a_record_or_partial_that_is_a_folder_or_junk_is_no_traceback(
        server: _Server, tmp_path: Path) -> None:
    server.files["/payload.bin"] = PAYLOAD
    root = _lab(tmp_path, {"payload": _entry([_url(server)])})
    record = store.record_path(root / "data", "payload",
                               catalogue.load(root).entries["payload"].files[0])
    record.parent.mkdir(parents=True)
    record.write_text("[not, a record")
    (root / "data" / "test").mkdir()
    (root / "data" / "test" / "payload.bin").write_bytes(PAYLOAD)
    listed = _cli(root, "list", "payload", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["state"] == "unverified"
    assert _cli(root, "get", "payload").returncode == 0
    assert json.loads(record.read_text())["sha256"] == SHA256
