"""labctl/incontainer/tools/serve_build.py, the build's helper, on a real socket:
the listing uv reads as --find-links (the folder's wheels, nothing else), whole files,
and byte ranges (uv reads a wheel's metadata through them instead of downloading the
wheel twice)."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "labctl/incontainer/tools/serve_build.py"
spec = importlib.util.spec_from_file_location("serve_wheels", SCRIPT)
assert spec and spec.loader
serve_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serve_wheels)

DATA = bytes(range(256)) * 40  # 10240 bytes
WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    (tmp_path / WHEEL).write_bytes(DATA)
    (tmp_path / "notes.txt").write_text("not a wheel")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "six-1.0-py3-none-any.whl").write_bytes(b"nested")
    handler = functools.partial(serve_wheels.Handler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _get(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_listing_links_the_wheels_and_nothing_else(url: str) -> None:
    status, _, body = _get(url)
    assert status == 200 and b'href="torch-2.13.0%2Bcpu-cp311' in body
    assert body.count(b"href=") == 1
    for other in ("notes.txt", "old/six-1.0-py3-none-any.whl", "../etc/passwd", "old/"):
        assert _get(url + other)[0] == 404, other


def test_whole_file_and_head_offer_ranges(url: str) -> None:
    status, headers, body = _get(url + WHEEL.replace("+", "%2B"))
    assert status == 200 and body == DATA and headers["Accept-Ranges"] == "bytes"
    status, headers, body = _get(url + WHEEL.replace("+", "%2B"), method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(DATA))
    assert headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(("asked", "start", "end"), [
    ("bytes=10-19", 10, 19), ("bytes=-22", len(DATA) - 22, len(DATA) - 1),
    ("bytes=10000-", 10000, len(DATA) - 1), ("bytes=10200-99999", 10200, len(DATA) - 1),
])
def test_ranges(url: str, asked: str, start: int, end: int) -> None:
    status, headers, body = _get(url + WHEEL.replace("+", "%2B"), Range=asked)
    assert status == 206 and body == DATA[start:end + 1]
    assert headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"


def test_a_range_past_the_end_is_refused(url: str) -> None:
    status, headers, _ = _get(url + WHEEL.replace("+", "%2B"), Range="bytes=20000-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_an_invalid_range_is_ignored(url: str) -> None:
    status, _, body = _get(url + WHEEL.replace("+", "%2B"), Range="bytes=50-10")
    assert status == 200 and body == DATA


def test_a_wheel_that_cannot_be_read_stops_the_server_before_it_starts(tmp_path: Path
                                                                         ) -> None:
    (tmp_path / "ok-1.0-py3-none-any.whl").write_bytes(b"x")
    (tmp_path / "torch-2.10.0-cp311-cp311-linux_x86_64.whl").symlink_to("/nowhere/t.whl")
    with pytest.raises(SystemExit) as info:
        serve_wheels.main("0", str(tmp_path))
    assert "torch-2.10.0-cp311-cp311-linux_x86_64.whl" in str(info.value.code)
    assert "ok-1.0" not in str(info.value.code)


def test_a_missing_file_is_404(url: str) -> None:
    assert _get(url + "nothing.whl")[0] == 404
