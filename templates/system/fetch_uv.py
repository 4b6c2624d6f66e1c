"""Install uv's binary from its wheel on a simple package index.

    python3 fetch_uv.py VERSION DEST [INDEX_URL]

Runs once, in the image's first layers, before uv exists, on the standard library alone:
pip takes seconds just to start. The wheel's sha256, when the index gives one (PyPI
always does), is checked before anything is unpacked. Proxies and the CA bundle come from
the environment (https_proxy, SSL_CERT_FILE), as for pip.
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import json
import os
import platform
import sys
import urllib.parse
import urllib.request
import zipfile

JSON = "application/vnd.pypi.simple.v1+json"


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def index_files(index: str) -> list[tuple[str, str, str | None]]:
    """(file name, url, sha256 or None) for each file of the uv project (PEP 691 or 503)."""
    req = urllib.request.Request(index.rstrip("/") + "/uv/",
                                 headers={"Accept": f"{JSON}, text/html;q=0.1"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body, kind, base = r.read(), r.headers.get_content_type(), r.geturl()
    if kind == JSON:
        return [(f["filename"], urllib.parse.urljoin(base, f["url"]),
                 f.get("hashes", {}).get("sha256")) for f in json.loads(body)["files"]]
    links = _Links()
    links.feed(body.decode("utf-8", "replace"))
    out = []
    for href in links.hrefs:
        url, _, fragment = urllib.parse.urljoin(base, href).partition("#")
        name = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        sha = fragment[len("sha256="):] if fragment.startswith("sha256=") else None
        out.append((name, url, sha))
    return out


def main(version: str, dest: str, index: str = "https://pypi.org/simple") -> None:
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                      platform.machine().lower())
    wheels = [(name, url, sha) for name, url, sha in index_files(index)
              if name.startswith(f"uv-{version}-") and name.endswith(f"_{arch}.whl")
              and "manylinux" in name]
    if not wheels:
        sys.exit(f"fetch_uv: no manylinux {arch} wheel of uv {version} on {index}")
    name, url, sha = wheels[0]
    with urllib.request.urlopen(url, timeout=300) as r:
        data = r.read()
    if sha and hashlib.sha256(data).hexdigest() != sha:
        sys.exit(f"fetch_uv: {name} does not match the sha256 the index gives")
    with zipfile.ZipFile(io.BytesIO(data)) as wheel, open(dest, "wb") as out:
        out.write(wheel.read(f"uv-{version}.data/scripts/uv"))
    os.chmod(dest, 0o755)


if __name__ == "__main__":
    main(*sys.argv[1:])
