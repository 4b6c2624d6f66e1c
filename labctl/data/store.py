"""Where a catalogue entry's files live in the lab's volume folders, whether they are
there, and putting a verified file in place (unpacked where its library wants it) so that
a library never finds a half-written or unverified file. Everything is written by labctl
itself, as the learner, inside the entry's volume folder."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from labctl.config.lab import Lab
from labctl.data.catalogue import DataFile, Entry
from labctl.errors import LabError

PARTIAL = ".labctl-partial"  # in each volume folder: downloads in progress (resumable)
_MIB = 1 << 20


@dataclass(frozen=True)
class FileState:
    path: Path
    present: bool
    size: int  # bytes on disk (the partial download's, when not present)
    problem: str = ""  # why a file that is there does not count


def volume_root(lab: Lab, name: str, entry: Entry) -> Path:
    vol = lab.volumes.get(entry.volume)
    if vol is None:
        raise LabError(f"{name} goes into the volume '{entry.volume}', which this lab's"
                       " volumes.yaml does not define",
                       fix=f"add a volume '{entry.volume}' to volumes.yaml (the shipped one"
                       " has it)")
    return lab.host_path(vol)


def file_path(root: Path, f: DataFile) -> Path:
    return root / PurePosixPath(f.to)


def partial_path(root: Path, name: str, f: DataFile) -> Path:
    return root / PARTIAL / name / f"{f.name}.part"


def problems(path: Path, f: DataFile, *, full: bool = True) -> list[str]:
    """What about the file at ``path`` differs from what its library checks (empty: it is
    the file). ``full`` False checks the size only, cheaply (for listings)."""
    size = path.stat().st_size
    out = []
    if f.size is not None and size != f.size:
        out.append(f"size {size} bytes, the library expects {f.size}")
    if f.min_size is not None and size < f.min_size:
        out.append(f"size {size} bytes, the library refuses files under {f.min_size}")
    if not full or out:
        return out
    wanted = {k: getattr(f, k) for k in ("sha1", "md5", "sha256") if getattr(f, k)}
    if f.sha256_prefix:
        wanted["sha256"] = wanted.get("sha256") or ""
    hashes = {k: hashlib.new(k) for k in wanted}
    first = hashlib.md5() if f.md5_first_mib else None
    read = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_MIB):
            for h in hashes.values():
                h.update(chunk)
            if first is not None and read < _MIB:
                first.update(chunk[: _MIB - read])
            read += len(chunk)
    for k, want in wanted.items():
        got = hashes[k].hexdigest()
        if want and got != want:
            out.append(f"{k} {got}, the library expects {want}")
    if f.sha256_prefix and not hashes["sha256"].hexdigest().startswith(f.sha256_prefix):
        out.append(f"sha256 {hashes['sha256'].hexdigest()[:16]}..., the library expects it"
                   f" to start with {f.sha256_prefix}")
    if first is not None and first.hexdigest() != f.md5_first_mib:
        out.append(f"md5 of the first MiB {first.hexdigest()}, the library expects"
                   f" {f.md5_first_mib}")
    return out


def state(root: Path, name: str, f: DataFile, *, verify: bool = False) -> FileState:
    path = file_path(root, f)
    if path.is_file():
        found = problems(path, f, full=verify)
        return FileState(path, not found, path.stat().st_size, "; ".join(found))
    part = partial_path(root, name, f)
    return FileState(path, False, part.stat().st_size if part.is_file() else 0)


def place(root: Path, name: str, f: DataFile, source: Path, *, move: bool) -> Path:
    """Verify ``source`` and put it where its library looks (unpacked too, when the entry
    says so). A file that fails its library's checks is refused and nothing is placed."""
    found = problems(source, f)
    if found:
        raise LabError(f"{source.name} is not the file {name} needs: " + "; ".join(found),
                       fix="nothing was put in place; fetch the file again (`labctl data get"
                       f" {name}`), or import the right one")
    dest = file_path(root, f)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.labctl-tmp")
    if move:
        os.replace(source, tmp) if _same_fs(source, dest.parent) else shutil.move(source, tmp)
    else:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)  # a library never sees a half-written file
    if f.extract:
        unpack(dest, root / PurePosixPath(f.unpack_into), f.extract)
    return dest


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def _safe(member: str) -> bool:
    p = PurePosixPath(member)
    return not p.is_absolute() and ".." not in p.parts and member.strip() != ""


def unpack(archive: Path, into: Path, kind: str) -> None:
    """Unpack next to where the library looks; members that would land outside ``into``
    (absolute paths, '..', links out) are refused. Existing files are kept as they are."""
    into.mkdir(parents=True, exist_ok=True)
    if kind == "gunzip":
        out = into / archive.name.removesuffix(".gz")
        tmp = out.with_name(f".{out.name}.labctl-tmp")
        with gzip.open(archive, "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, _MIB)
        os.replace(tmp, out)
        return
    with tempfile.TemporaryDirectory(prefix=".labctl-unpack-", dir=into) as tmpdir:
        tmp = Path(tmpdir)
        if kind == "unzip":
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if not _safe(n)]
                if bad:
                    raise LabError(f"{archive.name} holds paths outside its folder: {bad[0]}",
                                   fix="this is not the archive the library publishes")
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                bad = [m.name for m in tf.getmembers() if not _safe(m.name)
                       or ((m.issym() or m.islnk()) and not _safe(m.linkname))]
                if bad:
                    raise LabError(f"{archive.name} holds paths outside its folder: {bad[0]}",
                                   fix="this is not the archive the library publishes")
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, filter="data")
                else:  # pragma: no cover - Pythons before the extraction filters
                    tf.extractall(tmp)  # noqa: S202 (members checked above)
        for item in sorted(tmp.iterdir()):
            target = into / item.name
            if not target.exists():
                os.replace(item, target)
