"""Download a catalogue entry's files: the lab's mirrors first, then the library's own
URLs, each tried a few times, resuming where an interrupted download stopped (a Range
request: no byte is fetched twice), verified before it is put in place.

A download server is not trusted: it may send more than the file, or trickle. So a
download stops, and that URL is given up, once it would write more than the entry's
declared ``size`` (MAX_UNSIZED for an entry that declares none); a try is cut off when it
averages under MIN_RATE over RATE_WINDOW, or, for a sized file, when it runs past
DEADLINE_BASE + size / DEADLINE_RATE. A partial download is resumed only for a file with
a checksum (a tampered start would pass unseen otherwise). A full disk stops at once."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import requests
import urllib3

from labctl.config.lab import Lab
from labctl.config.trust import SYSTEM_BUNDLES
from labctl.data import store
from labctl.data.catalogue import Catalogue, DataFile, Entry
from labctl.errors import LabError, advise

RETRY_DELAYS = (1.0, 3.0)  # seconds before the second and third try of one URL
CHUNK = 1 << 20
# The most an entry without a declared size may download: 64 GiB is several times the
# largest unsized file of the shipped catalogue (VOC 2012, 2 GB; GloVe 42B, 1.9 GB) and
# still stops an endless response long before most disks are full.
MAX_UNSIZED = 64 << 30
DEADLINE_BASE = 60.0  # seconds: every sized download may take this long, plus ...
DEADLINE_RATE = 100_000  # ... its size at this rate (bytes per second): 2 GB: 5.6 hours
MIN_RATE = 1_000  # bytes per second, averaged over RATE_WINDOW: slower is cut off
RATE_WINDOW = 60.0  # seconds
TIMEOUT = (15.0, 60.0)  # seconds: connecting, and one read with no byte at all
Progress = Callable[[str, int, int | None], None]  # (file name, bytes so far, total)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class Bar(Protocol):
    """A progress display of downloads (the command's): shown while the files download."""

    def update(self, name: str, done: int, total: int | None) -> None: ...


class Refused(Exception):
    """The server sends something that is not the file: that URL is not tried again."""


class TooSlow(Exception):
    """A try cut off by the deadline or the minimum rate (the partial file is kept)."""


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


def _length(value: str | None) -> int | None:
    """A Content-Length header as a number (None when absent or not a number)."""
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) < 20 else None


def _download(s: requests.Session, url: str, part: Path, f: DataFile,
              progress: Progress) -> None:
    """Fetch ``url`` into ``part``, continuing after what ``part`` already holds (only
    when the file has a checksum), within the limits above."""
    cap = f.size if f.size is not None else MAX_UNSIZED
    if part.is_symlink() or not f.verifiable:
        part.unlink(missing_ok=True)  # never written through; unverifiable: start over
    have = part.stat().st_size if part.exists() else 0
    if have > cap:
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    start = time.monotonic()
    with s.get(url, stream=True, headers=headers, timeout=TIMEOUT) as r:
        if r.status_code == 416 and have:  # nothing left to fetch: verified next
            return
        r.raise_for_status()
        encoded = r.headers.get("Content-Encoding", "").strip().lower() not in ("", "identity")
        total = None if encoded else _length(r.headers.get("Content-Length"))
        if have and r.status_code == 206 and r.headers.get(
                "Content-Range", "").startswith(f"bytes {have}-"):
            mode = "ab"
            total = total + have if total is not None else None
        else:  # the server starts over: so do we
            mode, have = "wb", 0
        if total is not None and (total > cap or (f.size is not None and total != f.size)):
            raise Refused(f"the server announces {total} bytes, the file has"
                          f" {'at most ' if f.size is None else ''}{cap}")
        deadline = start + DEADLINE_BASE + cap / DEADLINE_RATE if f.size is not None else None
        read = getattr(r.raw, "read1", None) or r.raw.read  # read1: whatever has arrived
        window, window_bytes = start, 0
        with part.open(mode) as out:
            progress(f.name, have, total)
            while chunk := read(CHUNK, decode_content=True):
                if have + len(chunk) > cap:
                    raise Refused(f"the server sends more than the {cap} bytes of the file")
                out.write(chunk)
                have += len(chunk)
                window_bytes += len(chunk)
                progress(f.name, have, total)
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    raise TooSlow(f"not done after {now - start:.0f} s")
                if now - window >= RATE_WINDOW:
                    if window_bytes < MIN_RATE * (now - window):
                        raise TooSlow(f"{window_bytes} bytes in {now - window:.0f} s")
                    window, window_bytes = now, 0


def fetch_file(lab: Lab, name: str, entry: Entry, f: DataFile, *, progress: Progress,
               s: requests.Session | None = None) -> Path:
    """Download, verify and place one file; the errors of every try when none worked."""
    root = store.volume_root(lab, name, entry)
    part = store.partial_path(root, name, f)
    store.inside(root, part.parent).mkdir(parents=True, exist_ok=True)
    s = s or session(lab)
    errors: list[str] = []
    for url in candidates(lab, f):
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            time.sleep(delay)
            try:
                _download(s, url, part, f, progress)
            except Refused as e:  # a wrong file: never resumed from, never placed
                part.unlink(missing_ok=True)
                errors.append(f"{url}: {e}")
                break
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                    TooSlow) as e:
                if isinstance(e, OSError) and e.errno in _DISK_FULL:
                    raise store.disk_full(e, root) from None
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
        id="data.download-failed",
        details=errors[-6:],
        fix=(hint.fix + "; or " if hint else "")
        + f"fetch {', '.join(f.urls)} another way (a browser, a USB stick, a campus mirror) and"
        f" run `labctl data import {name} PATH`; a mirror goes into labctl.yaml as"
        " data_mirrors: [{from: URL-PREFIX, to: MIRROR-PREFIX}]",
    )


def fetch_entries(lab: Lab, cat: Catalogue, names: Sequence[str],
                  bar: Callable[[], AbstractContextManager[Bar]]) -> list[str]:
    """Fetch the files of entries ``names`` that are not in place (placed by labctl, or
    checked now), with ``bar`` shown meanwhile; the names, once all are in place."""
    s = session(lab)
    done = []
    with bar() as shown:
        for name in names:
            e = cat.entries[name]
            root = store.volume_root(lab, name, e)
            for f in e.files:
                if not store.ready(root, name, f):
                    fetch_file(lab, name, e, f, progress=shown.update, s=s)
            done.append(name)
    return done
