"""labctl/incontainer/system/fetch_uv.py, the script that puts uv into an image's first layers,
against a real simple index on 127.0.0.1: PEP 691 JSON and PEP 503 HTML, as mirrors serve
them, and a wheel whose sha256 does not match."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import io
import json
import platform
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "labctl/incontainer/system/fetch_uv.py"
spec = importlib.util.spec_from_file_location("fetch_uv", SCRIPT)
assert spec and spec.loader
fetch_uv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch_uv)

ARCH = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                  platform.machine().lower())


def _wheel(version: str, binary: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"uv-{version}.data/scripts/uv", binary)
        zf.writestr(f"uv-{version}.dist-info/METADATA", f"Name: uv\nVersion: {version}\n")
    return buf.getvalue()


class LocalIndex:
    """A tiny simple index: /simple/uv/ in JSON or HTML, and the wheel files."""

    def __init__(self, files: dict[str, bytes], html: bool, bad_hash: bool = False,
                 auth: str = "", redirect_files_to: str = "") -> None:
        self.files, self.html, self.bad_hash, self.auth = files, html, bad_hash, auth
        self.redirect_files_to = redirect_files_to
        self.requests: list[str] = []
        self.seen_auth: list[str | None] = []  # Authorization of each file request

    def page(self) -> tuple[bytes, str]:
        def sha(data: bytes) -> str:
            return "0" * 64 if self.bad_hash else hashlib.sha256(data).hexdigest()

        if self.html:
            links = "".join(f'<a href="../../files/{n}#sha256={sha(d)}">{n}</a><br>'
                            for n, d in self.files.items())
            return f"<html><body>{links}</body></html>".encode(), "text/html"
        body = {"meta": {"api-version": "1.0"}, "name": "uv", "files": [
            {"filename": n, "url": f"/files/{n}", "hashes": {"sha256": sha(d)}}
            for n, d in self.files.items()]}
        return json.dumps(body).encode(), fetch_uv.JSON


@pytest.fixture
def serve() -> Iterator[object]:
    servers = []

    def start(index: LocalIndex) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                index.requests.append(self.path)
                if index.auth and self.headers.get("Authorization") != index.auth:
                    self.send_error(401)
                    return
                if self.path.startswith("/files/"):
                    index.seen_auth.append(self.headers.get("Authorization"))
                if self.path == "/simple/uv/":
                    body, kind = index.page()
                elif self.path.startswith("/files/") and index.redirect_files_to:
                    self.send_response(302)
                    self.send_header("Location", index.redirect_files_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                elif self.path.startswith("/files/") and self.path[7:] in index.files:
                    body, kind = index.files[self.path[7:]], "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/simple"

    yield start
    for server in servers:
        server.shutdown()


def _files(version: str = "9.9.9") -> dict[str, bytes]:
    return {
        f"uv-{version}-py3-none-musllinux_1_1_{ARCH}.whl": _wheel(version, b"musl"),
        f"uv-{version}-py3-none-manylinux_2_17_{ARCH}.manylinux2014_{ARCH}.whl":
            _wheel(version, b"#!/bin/sh\necho uv\n"),
        f"uv-{version}-py3-none-manylinux_2_17_otherarch.whl": _wheel(version, b"other"),
        "uv-9.9.8-py3-none-manylinux_2_17_x86_64.whl": _wheel("9.9.8", b"old"),
        "uv-9.9.9.tar.gz": b"sdist",
    }


@pytest.mark.parametrize("html", [False, True], ids=["pep691-json", "pep503-html"])
def test_installs_the_manylinux_binary_for_this_machine(serve, tmp_path: Path,
                                                        html: bool) -> None:
    index = LocalIndex(_files(), html=html)
    dest = tmp_path / "uv"
    fetch_uv.main("9.9.9", str(dest), serve(index))
    assert dest.read_bytes() == b"#!/bin/sh\necho uv\n"
    assert dest.stat().st_mode & 0o777 == 0o755
    assert [p for p in index.requests if p.startswith("/files/")] == [
        f"/files/uv-9.9.9-py3-none-manylinux_2_17_{ARCH}.manylinux2014_{ARCH}.whl"]


def test_a_wheel_that_does_not_match_its_hash_is_refused(serve, tmp_path: Path) -> None:
    dest = tmp_path / "uv"
    with pytest.raises(SystemExit) as info:
        fetch_uv.main("9.9.9", str(dest), serve(LocalIndex(_files(), html=True, bad_hash=True)))
    assert "sha256" in str(info.value.code)
    assert not dest.exists()


def test_a_version_the_index_lacks_is_named(serve, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        fetch_uv.main("1.2.3", str(tmp_path / "uv"), serve(LocalIndex(_files(), html=False)))
    assert "uv 1.2.3" in str(info.value.code) and ARCH in str(info.value.code)


def test_credentials_in_the_index_url_are_sent_as_basic_auth(serve, tmp_path: Path) -> None:
    import base64

    index = LocalIndex(_files(), html=True,
                       auth="Basic " + base64.b64encode(b"learner:p@ss").decode())
    url = serve(index).replace("http://", "http://learner:p%40ss@")
    fetch_uv.main("9.9.9", str(tmp_path / "uv"), url)
    assert (tmp_path / "uv").read_bytes() == b"#!/bin/sh\necho uv\n"


def test_credentials_do_not_follow_a_redirect_to_another_host(serve, tmp_path: Path) -> None:
    """A private index that sends its files to a CDN: the CDN must not get the password."""
    import base64

    auth = "Basic " + base64.b64encode(b"learner:secret").decode()
    cdn = LocalIndex(_files(), html=True)  # any Authorization header is recorded below
    cdn_url = serve(cdn).removesuffix("/simple")
    index = LocalIndex(_files(), html=True, auth=auth, redirect_files_to=cdn_url)
    url = serve(index).replace("http://", "http://learner:secret@")
    fetch_uv.main("9.9.9", str(tmp_path / "uv"), url)
    assert (tmp_path / "uv").read_bytes() == b"#!/bin/sh\necho uv\n"
    assert cdn.seen_auth == [None]
