"""Fetch one secret from the build's helper container into a file only root can read.

    python3 fetch_secret.py NAME DEST

A RUN step that downloads runs this first and removes DEST before it ends, so the secret
(index credentials, as a netrc) is in no layer, no build argument and no history line.
The helper listens on 127.0.0.1 of the namespace the RUN step shares; no proxy is asked.
"""

from __future__ import annotations

import os
import sys
import urllib.request

PORT = 8765


def main(name: str, dest: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{PORT}/.secrets/{name}", timeout=30) as r:
        data = r.read()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main(*sys.argv[1:])
