"""Download a catalogue entry's files: the lab's mirrors first, then the library's own
URLs, each tried a few times, resuming where an interrupted download stopped (a Range
request: no byte is fetched twice), verified before it is put in place."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import requests

from labctl.config.lab import Lab
from labctl.config.trust import SYSTEM_BUNDLES
from labctl.data import store
from labctl.data.catalogue import DataFile, Entry
from labctl.errors import LabError, advise

RETRY_DELAYS = (1.0, 3.0)  # seconds before the second and third try of one URL
CHUNK = 1 << 20
Progress = Callable[[str, int, int | None], None]  # (file name, bytes so far, total)


def candidates(lab: Lab, f: DataFile) -> list[str]:
    """The URLs to try, in order: each lab mirror that rewrites one of the library's URLs
    (labctl.yaml data_mirrors, in the order given), then the library's URLs."""
    out: list[str] = []
    for m in lab.settings.data_mirrors:
        out += [m.to + u.removeprefix(m.from_) for u in f.urls if u.startswith(m.from_)]
    out += f.urls
    return list(dict.fromkeys(out))


def session(lab: Lab) -> requests.Session:
    """A session that trusts what builds trust: the lab's CA bundle, else the host's store
    (so a sudo-reset shell behind a TLS-inspecting proxy still works), with its proxies."""
    s = requests.Session()
    net = lab.settings.network
    if net.ca_bundle:
        s.verify = str(lab.resolve_path(net.ca_bundle))
    elif not os.environ.get("REQUESTS_CA_BUNDLE"):
        bundle = next((Path("/", b) for b in SYSTEM_BUNDLES if Path("/", b).is_file()), None)
        if bundle is not None:
            s.verify = str(bundle)
    proxies = {k: getattr(net, f"{k}_proxy") for k in ("http", "https")
               if getattr(net, f"{k}_proxy")}
    if proxies:
        s.proxies.update(proxies)
    return s


def _download(s: requests.Session, url: str, part: Path, name: str,
              progress: Progress) -> None:
    """Fetch ``url`` into ``part``, continuing after what ``part`` already holds."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with s.get(url, stream=True, headers=headers, timeout=(15, 60)) as r:
        if r.status_code == 416 and have:  # nothing left to fetch: verified next
            return
        r.raise_for_status()
        total = int(r.headers.get("Content-Length") or 0) or None
        if have and r.status_code == 206 and r.headers.get(
                "Content-Range", "").startswith(f"bytes {have}-"):
            mode = "ab"
            total = total + have if total else None
        else:  # the server starts over: so do we
            mode, have = "wb", 0
        with part.open(mode) as out:
            progress(name, have, total)
            for chunk in r.iter_content(CHUNK):
                out.write(chunk)
                have += len(chunk)
                progress(name, have, total)


def fetch_file(lab: Lab, name: str, entry: Entry, f: DataFile, *, progress: Progress,
               s: requests.Session | None = None) -> Path:
    """Download, verify and place one file; the errors of every try when none worked."""
    root = store.volume_root(lab, name, entry)
    part = store.partial_path(root, name, f)
    s = s or session(lab)
    errors: list[str] = []
    for url in candidates(lab, f):
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            time.sleep(delay)
            try:
                _download(s, url, part, f.name, progress)
            except (requests.RequestException, OSError) as e:
                errors.append(f"{url} (try {attempt + 1}): {type(e).__name__}: {e}"[:300])
                continue
            found = store.problems(part, f)
            if found:  # a wrong file: never resumed from, never placed
                part.unlink()
                errors.append(f"{url}: " + "; ".join(found))
                break
            return store.place(root, name, f, part, move=True)
    text = "\n".join(errors)
    hint = advise(text, "build")
    raise LabError(
        f"could not download {f.name} of {name}" + (f": {hint.message}" if hint else ""),
        details=errors[-6:],
        fix=(hint.fix + "; or " if hint else "")
        + f"fetch {', '.join(f.urls)} another way (a browser, a USB stick, a campus mirror) and"
        f" run `labctl data import {name} PATH`; a mirror goes into labctl.yaml as"
        " data_mirrors: [{from: URL-PREFIX, to: MIRROR-PREFIX}]",
    )
