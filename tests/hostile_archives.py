"""Hostile tar and zip archives, and what must hold after labctl.data.store.unpack meets
them. Standard library and labctl only: tests/test_data_hostile.py runs check() in its
own process and, as root, as a script with the learner's Python (the system Python 3.11.2
of Debian bookworm in CI, whose tarfile has no extraction filter):

    python tests/hostile_archives.py FOLDER   # prints the problems as JSON, exit 1 if any
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

from labctl.data import store
from labctl.errors import LabError


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, uid: int = 4321,
          link: str = "", major: int = 0, minor: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = kind, mode, uid, uid
    info.uname = info.gname = "root" if uid == 0 else "someone"
    info.linkname, info.devmajor, info.devminor = link, major, minor
    return info


def _zip(members: list[tuple[str, int, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, mode, data in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.create_system = 3  # Unix: the mode bits count
            zf.writestr(info, data)
    return buf.getvalue()


def cases(outside: Path) -> dict[str, tuple[str, bytes, bool]]:
    """name: (kind, archive, whether labctl may unpack it)."""
    f = _info
    return {
        "char-device": ("untar", _tar([(f("ok.txt"), b"x"),
                                       (f("null", tarfile.CHRTYPE, major=1, minor=3), b"")]),
                        False),
        "block-device": ("untar", _tar([(f("sda", tarfile.BLKTYPE, major=8, minor=0), b"")]),
                         False),
        "fifo": ("untar", _tar([(f("pipe", tarfile.FIFOTYPE), b"")]), False),
        "setuid-root": ("untar", _tar([
            (f("bin", tarfile.DIRTYPE, mode=0o7777, uid=0), b""),
            (f("bin/su", mode=0o4755, uid=0), b"#!/bin/sh\n"),
            (f("bin/sg", mode=0o2777), b"#!/bin/sh\n"),
            (f("bin/none", mode=0o000), b"data"),
            (f("bin/same", tarfile.LNKTYPE, mode=0o4755, uid=0, link="bin/su"), b"")]), True),
        "symlink-out": ("untar", _tar([(f("etc", tarfile.SYMTYPE, link="/etc"), b"")]),
                        False),
        "symlink-inside": ("untar", _tar([(f("a.txt"), b"a"),
                                          (f("b.txt", tarfile.SYMTYPE, link="a.txt"), b"")]),
                           False),
        "file-through-symlink": ("untar", _tar([
            (f("d", tarfile.SYMTYPE, link=str(outside)), b""),
            (f("d/planted"), b"owned")]), False),
        "file-through-relative-symlink": ("untar", _tar([
            (f("d", tarfile.SYMTYPE, link="../../outside"), b""),
            (f("d/planted"), b"owned")]), False),
        "hardlink-out": ("untar", _tar([(f("passwd", tarfile.LNKTYPE, link="/etc/passwd"),
                                         b"")]), False),
        "absolute-name": ("untar", _tar([(f(str(outside / "planted")), b"owned")]), False),
        "dotdot-name": ("untar", _tar([(f("../outside/planted"), b"owned")]), False),
        "zip-symlink": ("unzip", _zip([("link", 0o120777, b"../../outside")]), False),
        "zip-dotdot": ("unzip", _zip([("../outside/planted", 0o100644, b"owned")]), False),
        "zip-setuid": ("unzip", _zip([("zbin/", 0o40777, b""), ("zbin/su", 0o104777, b"x")]),
                       True),
    }


def check(base: Path) -> list[str]:
    """Unpack each hostile archive under ``base``; what went wrong, as sentences."""
    out: list[str] = []
    for name, (kind, data, allowed) in cases(base / "outside").items():
        case = base / name
        (case / "outside").mkdir(parents=True)
        archive = case / f"{name}.{'zip' if kind == 'unzip' else 'tgz'}"
        archive.write_bytes(data)
        into = case / "lab" / "into"
        try:
            store.unpack(archive, into, kind)
            if not allowed:
                out.append(f"{name}: unpacked, not refused")
        except LabError:
            if allowed:
                out.append(f"{name}: refused")
            elif any(into.iterdir()):
                out.append(f"{name}: refused, but left {sorted(p.name for p in into.iterdir())}")
        except Exception as e:  # noqa: BLE001 - what the test reports
            out.append(f"{name}: {type(e).__name__}: {e}")
        if any((case / "outside").iterdir()) or (base / "outside").exists():
            out.append(f"{name}: wrote outside the folder")
        for p in sorted((case / "lab").rglob("*")):
            st = p.lstat()
            what = stat.S_IFMT(st.st_mode)
            if what not in (stat.S_IFREG, stat.S_IFDIR):
                out.append(f"{name}: made {p.relative_to(case)} of type {oct(what)}")
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | 0o022):
                out.append(f"{name}: {p.relative_to(case)} has mode {oct(st.st_mode)}")
            if st.st_uid != os.getuid():
                out.append(f"{name}: {p.relative_to(case)} is owned by uid {st.st_uid}")
    for p, mode in (("setuid-root/lab/into/bin/su", 0o755), ("setuid-root/lab/into/bin", 0o755),
                    ("setuid-root/lab/into/bin/none", 0o644),
                    ("setuid-root/lab/into/bin/same", 0o755),
                    ("zip-setuid/lab/into/zbin/su", 0o755)):
        if not (base / p).exists():
            out.append(f"{p} is missing")
        elif stat.S_IMODE((base / p).stat().st_mode) != mode:
            out.append(f"{p} has mode {oct((base / p).stat().st_mode)}, not {oct(mode)}")
    return out


if __name__ == "__main__":
    found = check(Path(sys.argv[1]))
    print(json.dumps({"python": sys.version.split()[0], "uid": os.getuid(),
                      "data_filter": hasattr(tarfile, "data_filter"), "problems": found}))
    sys.exit(1 if found else 0)
