"""Serve a folder read-only over HTTP, with byte ranges.

    python3 serve_wheels.py PORT FOLDER

`labctl build` runs this in a container of its own to serve the lab's wheelhouse to the
build's RUN steps. Ranges matter: uv reads a wheel's metadata with a range request when
the server offers them, and downloads the whole wheel twice (metadata, then install)
when it does not; for a torch wheel that is gigabytes.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import sys
from typing import BinaryIO

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _Slice:
    """The first ``left`` bytes of an open file, read as a file."""

    def __init__(self, f: BinaryIO, left: int) -> None:
        self.f, self.left = f, left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size) if size > 0 else b""
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.f.close()


class Handler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):  # noqa: ANN201 (http.server's own signature)
        path = self.translate_path(self.path)
        if os.path.isdir(path):
            return super().send_head()  # the listing uv reads as --find-links
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by do_GET / do_HEAD)
        except OSError:
            self.send_error(404)
            return None
        size = os.fstat(f.fileno()).st_size
        start, end = 0, size - 1
        m = _RANGE.fullmatch(self.headers.get("Range", ""))
        if m and (m[1] or m[2]):
            if not m[1]:  # the last N bytes
                start = max(size - int(m[2]), 0)
            else:
                start, end = int(m[1]), min(int(m[2]), end) if m[2] else end
            if start > end:
                f.close()
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        f.seek(start)
        return _Slice(f, end - start + 1)


def main(port: str, folder: str) -> None:
    handler = functools.partial(Handler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    print(f"Serving HTTP on 127.0.0.1 port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
