"""The build's helper: serve a wheelhouse and index credentials to the build's RUN steps.

    python3 serve_build.py PORT

`labctl build` runs this (as `python3 -c`, so it is in no image layer) in a container of
its own, whose network namespace the build's RUN steps share: they reach it on 127.0.0.1
and nothing else can. /srv/wheels (mounted read-only, optional) is the wheelhouse: only
its own *.whl files are served, at /NAME.whl with a listing at /, and it refuses to start
when one of them cannot be read. Ranges matter: uv reads a wheel's metadata with a range
request when the server offers them, and otherwise downloads the whole wheel twice
(metadata, then install); for a torch wheel that is gigabytes. /srv/secrets (optional)
holds the index credentials, served at /.secrets/NAME for the RUN step that downloads,
which removes them again before its layer is committed.
"""

from __future__ import annotations

import functools
import html
import http.server
import os
import re
import sys
import urllib.parse
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


WHEELS = "/srv/wheels"
SECRETS = "/srv/secrets"


def wheels(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder)
                  if n.endswith(".whl") and os.path.isfile(os.path.join(folder, n)))


def secret(name: str) -> bytes | None:
    if "/" in name or name.startswith(".") or not os.path.isfile(os.path.join(SECRETS, name)):
        return None
    with open(os.path.join(SECRETS, name), "rb") as f:
        return f.read()


class Handler(http.server.SimpleHTTPRequestHandler):
    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_head(self):  # noqa: ANN201 (http.server's own signature)
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        if name.startswith(".secrets/"):
            body = secret(name.removeprefix(".secrets/"))
            if body is None:
                self.send_error(404)
            else:
                self._send(200, body, "application/octet-stream")
            return None
        if name == "":  # the listing uv reads as --find-links
            links = "".join(f'<a href="{urllib.parse.quote(n)}">{html.escape(n)}</a><br>\n'
                            for n in wheels(self.directory))
            self._send(200, f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode(),
                       "text/html; charset=utf-8")
            return None
        if "/" in name or name not in wheels(self.directory):
            self.send_error(404)
            return None
        path = os.path.join(self.directory, name)
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by do_GET / do_HEAD)
        except OSError:
            self.send_error(403, "cannot read this wheel")
            return None
        size = os.fstat(f.fileno()).st_size
        start, end, partial = 0, size - 1, False
        m = _RANGE.fullmatch(self.headers.get("Range", ""))
        if m and (m[1] or m[2]):
            if m[1]:
                first, last = int(m[1]), min(int(m[2]), size - 1) if m[2] else size - 1
            else:  # the last N bytes
                first, last = max(size - int(m[2]), 0), size - 1
            if first >= size:
                f.close()
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return None
            if first <= last:  # otherwise not a valid range: ignored, the whole file
                start, end, partial = first, last, True
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        f.seek(start)
        return _Slice(f, end - start + 1)


    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's)
        pass  # the build's own output says what it fetched


def main(port: str, folder: str = WHEELS) -> None:
    unreadable = [n for n in wheels(folder) if not os.access(os.path.join(folder, n), os.R_OK)]
    unreadable += [n for n in (os.listdir(folder) if os.path.isdir(folder) else [])
                   if n.endswith(".whl") and not os.path.isfile(os.path.join(folder, n))]
    if unreadable:
        sys.exit("serve_build: cannot read " + ", ".join(sorted(unreadable))
                 + " (a wheel must be a readable file, not a link out of the folder)")
    handler = functools.partial(Handler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    print(f"Serving HTTP on 127.0.0.1 port {port}: {len(wheels(folder))} wheels", flush=True)

    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
