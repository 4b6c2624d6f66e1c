"""Install uv's binary from its wheel on a simple package index.

    python3 fetch_uv.py VERSION DEST [INDEX_URL]

Runs once, in the image's first layers, before uv exists, on the standard library alone:
pip takes seconds just to start. The wheel's sha256, when the index gives one (PyPI
always does), is checked before anything is unpacked. Proxies and the CA bundle come from
the environment (https_proxy, SSL_CERT_FILE), as for pip; user:password@ in the index URL
is sent as basic auth to the index's own scheme, host and port, never along a redirect.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import io
import json
import netrc
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


class Index:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/") + "/")
        self.origin = (parts.scheme, parts.hostname, parts.port)
        self.auth: dict[str, str] = {}
        creds = None
        if parts.username is not None:
            creds = f"{urllib.parse.unquote(parts.username)}:" \
                    f"{urllib.parse.unquote(parts.password or '')}"
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        elif os.environ.get("NETRC") and parts.hostname:
            entry = netrc.netrc(os.environ["NETRC"]).authenticators(parts.hostname)
            if entry:
                creds = f"{entry[0]}:{entry[2] or ''}"
        if creds is not None:
            self.auth = {"Authorization": f"Basic {base64.b64encode(creds.encode()).decode()}"}
        self.url = parts.geturl()

    def get(self, url: str, accept: str = "*/*") -> tuple[bytes, str, str]:
        """(body, content type, final url); credentials only go to the index's origin."""
        req = urllib.request.Request(url, headers={"Accept": accept})
        parts = urllib.parse.urlsplit(url)
        if (parts.scheme, parts.hostname, parts.port) == self.origin:
            for key, value in self.auth.items():  # not copied onto a redirect
                req.add_unredirected_header(key, value)
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.read(), r.headers.get_content_type(), r.geturl()

    def files(self, project: str) -> list[tuple[str, str, str | None]]:
        """(file name, url, sha256 or None) for each file of ``project`` (PEP 691/503)."""
        body, kind, base = self.get(self.url + project + "/", f"{JSON}, text/html;q=0.1")
        if kind == JSON:
            return [(f["filename"], urllib.parse.urljoin(base, f["url"]),
                     f.get("hashes", {}).get("sha256")) for f in json.loads(body)["files"]]
        links = _Links()
        links.feed(body.decode("utf-8", "replace"))
        out = []
        for href in links.hrefs:
            url, _, fragment = urllib.parse.urljoin(base, href).partition("#")
            name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
            sha = fragment[len("sha256="):] if fragment.startswith("sha256=") else None
            out.append((name, url, sha))
        return out


def main(version: str, dest: str, index_url: str = "https://pypi.org/simple") -> None:
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    index = Index(index_url)
    wheels = [(name, url, sha) for name, url, sha in index.files("uv")
              if name.startswith(f"uv-{version}-") and name.endswith(f"_{arch}.whl")
              and "manylinux" in name]
    if not wheels:
        sys.exit(f"fetch_uv: no manylinux {arch} wheel of uv {version} on {index.url}")
    name, url, sha = wheels[0]
    data, _, _ = index.get(url)
    if sha and hashlib.sha256(data).hexdigest() != sha.lower():
        sys.exit(f"fetch_uv: {name} does not match the sha256 the index gives")
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        binary = wheel.read(f"uv-{version}.data/scripts/uv")
    with open(dest, "wb") as out:
        out.write(binary)
    os.chmod(dest, 0o755)


if __name__ == "__main__":
    main(*sys.argv[1:])
