"""Where a catalogue entry's files live in the lab's volume folders, whether they are
there, and putting a verified file in place (unpacked where its library wants it) so that
a library never finds a half-written or unverified file. Everything is written by labctl
itself, as the learner, inside the entry's volume folder: every path is checked, links
resolved, to stay inside that folder, and archives are unpacked by labctl's own member
loop (regular files and folders only, modes without setuid, never chowned) rather than
by tarfile's extraction, whose safety filter Python 3.11.2 (Debian bookworm) lacks."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from labctl.config.lab import Lab
from labctl.data.catalogue import DataFile, Entry
from labctl.errors import LabError, advise

PARTIAL = ".labctl-partial"  # in each volume folder: downloads in progress (resumable)
VERIFIED = ".labctl-verified"  # in each volume folder: what labctl checked and placed
_MIB = 1 << 20
# Unpacked bytes per archive: far above any catalogue archive (VOC 2012: 2 GB), far below
# what a gzip bomb of a few MB expands to.
UNPACK_LIMIT = 64 << 30
UNPACK_MEMBERS = 1_000_000
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class FileState:
    path: Path
    present: bool
    size: int  # bytes on disk (the partial download's, when not present)
    problem: str = ""  # why a file that is there does not count
    unverified: bool = False  # there, but labctl did not check and place it


def volume_root(lab: Lab, name: str, entry: Entry) -> Path:
    vol = lab.volumes.get(entry.volume)
    if vol is None:
        raise LabError(f"{name} goes into the volume '{entry.volume}', which this lab's"
                       " volumes.yaml does not define", id="data.no-volume",
                       fix=f"add a volume '{entry.volume}' to volumes.yaml (the shipped one"
                       " has it)")
    return lab.host_path(vol)


def file_path(root: Path, f: DataFile) -> Path:
    return root / PurePosixPath(f.to)


def partial_path(root: Path, name: str, f: DataFile) -> Path:
    return root / PARTIAL / name / f"{f.name}.part"


def record_path(root: Path, name: str, f: DataFile) -> Path:
    # '~' is never part of a catalogue path (RelPath), so the flattened name is unique
    return root / VERIFIED / name / (f.to.replace("/", "~") + ".json")


def inside(root: Path, path: Path) -> Path:
    """``path`` (below ``root``) with its links resolved, refused when that leaves the
    volume folder: a link in the folder (made by a container, an archive, anyone) must not
    make labctl write or read elsewhere."""
    base = root.resolve()
    real = (base / path.relative_to(root)).resolve()
    if not real.is_relative_to(base):
        raise LabError(f"{path} leads out of the volume folder {root} (to {real})",
                       id="data.link-escapes",
                       fix=f"remove the link that leads out (`ls -l {path.parent}`); labctl"
                       " writes only inside the volume folder")
    return real


def disk_full(e: OSError, folder: Path) -> LabError:
    """A full disk while labctl writes in ``folder``: said at once, naming that folder."""
    found = advise("", "os", errno=e.errno, path=str(folder))
    if found is None:  # pragma: no cover - the table has the row
        return LabError(f"the disk that holds {folder} is full",
                        id="data.disk-full", fix=f"df -h {folder}")
    return LabError(found.message, id=found.id, fix=found.fix, details=[f"{e.strerror or e}"])


def problems(path: Path, f: DataFile, *, full: bool = True) -> list[str]:
    """What about the file at ``path`` differs from what its library checks (empty: it is
    the file). ``full`` False checks the size only, cheaply (for listings)."""
    return _check(path, f, full=full)[0]


def _check(path: Path, f: DataFile, *, full: bool = True) -> tuple[list[str], str]:
    """problems() and the file's sha256 (when ``full``), in one read."""
    size = path.stat().st_size
    out = []
    if f.size is not None and size != f.size:
        out.append(f"size {size} bytes, the library expects {f.size}")
    if f.min_size is not None and size < f.min_size:
        out.append(f"size {size} bytes, the library refuses files under {f.min_size}")
    if not full or out:
        return out, ""
    wanted = {k: getattr(f, k) for k in ("sha1", "md5") if getattr(f, k)}
    hashes = {k: hashlib.new(k) for k in (*wanted, "sha256")}
    first = hashlib.md5() if f.md5_first_mib else None
    read = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_MIB):
            for h in hashes.values():
                h.update(chunk)
            if first is not None and read < _MIB:
                first.update(chunk[: _MIB - read])
            read += len(chunk)
    sha256 = hashes["sha256"].hexdigest()
    for k, want in wanted.items():
        got = hashes[k].hexdigest()
        if got != want:
            out.append(f"{k} {got}, the library expects {want}")
    if f.sha256 and sha256 != f.sha256:
        out.append(f"sha256 {sha256}, the library expects {f.sha256}")
    if f.sha256_prefix and not sha256.startswith(f.sha256_prefix):
        out.append(f"sha256 {sha256[:16]}..., the library expects it to start with"
                   f" {f.sha256_prefix}")
    if first is not None and first.hexdigest() != f.md5_first_mib:
        out.append(f"md5 of the first MiB {first.hexdigest()}, the library expects"
                   f" {f.md5_first_mib}")
    return out, sha256


def _read_record(root: Path, name: str, f: DataFile) -> dict | None:
    try:
        rec = json.loads(inside(root, record_path(root, name, f)).read_text())
    except (OSError, ValueError, LabError):
        return None
    return rec if isinstance(rec, dict) else None


def _write_record(root: Path, name: str, f: DataFile, path: Path, sha256: str) -> None:
    """What labctl checked: the file's size, mtime and sha256 as placed."""
    st = path.stat()
    rec = {"to": f.to, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    dest = record_path(root, name, f)
    folder = inside(root, dest.parent)
    folder.mkdir(parents=True, exist_ok=True)
    real = folder / dest.name  # a link there is replaced, not followed
    tmp = real.with_name(f".{real.name}.labctl-tmp")
    tmp.unlink(missing_ok=True)  # one an interrupted run left
    with _new_file(tmp, 0o644) as out:
        out.write(json.dumps(rec).encode())
    os.replace(tmp, real)


def _matches(rec: dict | None, path: Path) -> bool:
    st = path.stat()
    return bool(rec) and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns


def state(root: Path, name: str, f: DataFile, *, verify: bool = False) -> FileState:
    """Whether ``f`` is in place. Present means labctl checked it: it placed the file and
    its record still matches (size and mtime; with ``verify`` the recorded sha256 and the
    library's checks too), or, with ``verify``, the library's own checksum matches now. A
    file labctl has no checksum for and did not place is there but unverified."""
    path = file_path(root, f)
    try:
        real = inside(root, path)
    except LabError as e:
        return FileState(path, False, 0, e.message)
    if real.is_file():
        size = real.stat().st_size
        rec = _read_record(root, name, f)
        if _matches(rec, real):
            if not verify:
                return FileState(path, True, size)
            found, sha256 = _check(real, f)
            if not found and rec and rec.get("sha256") not in ("", sha256):
                found = [f"sha256 {sha256}, labctl placed a file with {rec.get('sha256')}"]
            return FileState(path, not found, size, "; ".join(found))
        found = problems(real, f, full=False)
        if not found and verify and f.verifiable:
            found, sha256 = _check(real, f)
            if not found:
                with suppress(OSError, LabError):  # the next look is cheap, if it can be
                    _write_record(root, name, f, real, sha256)
                return FileState(path, True, size)
        return FileState(path, False, size, "; ".join(found), unverified=not found)
    part = partial_path(root, name, f)
    return FileState(path, False, part.stat().st_size if part.is_file() else 0)


def ready(root: Path, name: str, f: DataFile) -> bool:
    """Whether `data get` may skip ``f``: placed by labctl, or a file the library fetched
    itself whose checksum matches (then recorded, so the next look is cheap)."""
    st = state(root, name, f)
    if st.present or not (st.unverified and f.verifiable):
        return st.present
    return state(root, name, f, verify=True).present


@dataclass
class Imported:
    """What `data import` put in place, and the entry's files it did not find."""

    name: str
    placed: list[str]
    missing: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "placed": self.placed, "missing": self.missing}


def import_files(root: Path, name: str, entry: Entry, source: str) -> Imported:
    """Put the files of ``entry`` found at ``source`` in place, each verified: a file
    (the entry's only one, or one of its names) or a folder searched for its names.
    ``source`` as the learner wrote it, which the refusal names."""
    src = Path(source)
    missing, placed = [], []
    for f in entry.files:
        if src.is_file():
            found = src if len(entry.files) == 1 or src.name == f.name else None
        else:
            found = next((p for p in sorted(src.rglob(f.name)) if p.is_file()), None)
        if found is None:
            missing.append(f.name)
            continue
        placed.append(str(place(root, name, f, found, move=False)))
    if missing and not placed:
        raise LabError(f"{source} holds none of the files of {name}",
                       id="cli.no-matching-files", details=[f"looked for {', '.join(missing)}"],
                       fix="name the downloaded file, or the folder that holds it")
    return Imported(name, placed, missing)


def place(root: Path, name: str, f: DataFile, source: Path, *, move: bool) -> Path:
    """Verify ``source`` and put it where its library looks (unpacked too, when the entry
    says so). A file that fails its library's checks, or an archive that cannot be
    unpacked safely, is refused and nothing is placed."""
    try:
        return _place(root, name, f, source, move=move)
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise disk_full(e, root) from None
        raise


def _place(root: Path, name: str, f: DataFile, source: Path, *, move: bool) -> Path:
    found, sha256 = _check(source, f)
    if found:
        raise LabError(f"{source.name} is not the file {name} needs: " + "; ".join(found),
                       id="data.checksum-mismatch",
                       fix="nothing was put in place; fetch the file again (`labctl data get"
                       f" {name}`), or import the right one")
    dest = file_path(root, f)
    folder = inside(root, dest.parent)
    folder.mkdir(parents=True, exist_ok=True)
    real = folder / dest.name  # a link there is replaced, not followed
    tmp = real.with_name(f".{real.name}.labctl-tmp")
    tmp.unlink(missing_ok=True)  # never written through: a link there is replaced
    if move and _same_fs(source, real.parent):
        os.replace(source, tmp)
    else:
        with source.open("rb") as src, _new_file(tmp, 0o644) as out:
            shutil.copyfileobj(src, out, _MIB)
        if move:
            source.unlink()
    try:
        if f.extract:
            into = inside(root, root / PurePosixPath(f.unpack_into))
            unpack(tmp, into, f.extract, name=real.name)
        os.replace(tmp, real)  # a library never sees a half-written file
    finally:
        tmp.unlink(missing_ok=True)  # a refused archive is not left to count as present
    _write_record(root, name, f, real, sha256)
    return dest


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


@contextmanager
def _new_file(path: Path, mode: int) -> Iterator[IO[bytes]]:
    """A new regular file at ``path``, never opened through a link or over a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)  # the umask does not decide what a library reads
        yield out


def _member(name: str) -> PurePosixPath | None:
    """An archive member's path inside the folder it is unpacked into; None for one that
    would land outside (absolute, '..', empty)."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not name.strip() or "\\" in name:
        return None
    return p


def _refuse(archive: str, member: str, why: str) -> LabError:
    return LabError(f"{archive} holds {why}: {member[:200]!r}", id="data.unsafe-archive",
                    fix="nothing was unpacked; this is not the archive the library"
                    " publishes (fetch it again, from the library's own URL)")


def unpack(archive: Path, into: Path, kind: str, *, name: str | None = None) -> None:
    """Unpack next to where the library looks. Only regular files and folders are made:
    a member that would land outside ``into`` (absolute, '..'), a link, a device or a
    FIFO refuses the whole archive; modes lose setuid/setgid/sticky and group/other write;
    nothing is chowned. Existing files are kept as they are. ``name`` is the archive's
    own name when ``archive`` is a temporary copy."""
    name = name or archive.name
    into.mkdir(parents=True, exist_ok=True)
    if kind == "gunzip":
        out = into / name.removesuffix(".gz")
        tmp = out.with_name(f".{out.name}.labctl-tmp")
        tmp.unlink(missing_ok=True)
        try:
            with gzip.open(archive, "rb") as src, _new_file(tmp, 0o644) as dst:
                _copy(src, dst, name, out.name, UNPACK_LIMIT)
            os.replace(tmp, out)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise _refuse(name, name, f"no valid gzip data ({e})") from None
        finally:
            tmp.unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix=".labctl-unpack-", dir=into) as tmpdir:
        tmp = Path(tmpdir)
        try:
            if kind == "unzip":
                _unzip(archive, tmp, name)
            else:
                _untar(archive, tmp, name)
        except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, lzma.LZMAError,
                EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError) as e:
            raise _refuse(name, name, f"no valid {kind} data ({type(e).__name__}: {e})"
                          ) from None
        for item in sorted(tmp.iterdir()):
            target = into / item.name
            if not (target.exists() or target.is_symlink()):
                os.replace(item, target)


def _copy(src: IO[bytes], dst: IO[bytes], archive: str, member: str, left: int) -> int:
    """Copy at most ``left`` bytes; an archive that expands beyond is refused."""
    n = 0
    while chunk := src.read(_MIB):
        n += len(chunk)
        if n > left:
            raise _refuse(archive, member, f"more than {UNPACK_LIMIT >> 30} GiB unpacked")
        dst.write(chunk)
    return n


class _Writer:
    """Makes the members of one archive under ``root`` (a fresh folder labctl made): its
    folders are labctl's, so no member is written through a link."""

    def __init__(self, root: Path, archive: str) -> None:
        self.root, self.archive = root, archive
        self.left, self.count = UNPACK_LIMIT, 0
        self.files: dict[PurePosixPath, Path] = {}

    def path(self, name: str) -> tuple[PurePosixPath, Path]:
        self.count += 1
        if self.count > UNPACK_MEMBERS:
            raise _refuse(self.archive, name, f"more than {UNPACK_MEMBERS} members")
        rel = _member(name)
        if rel is None:
            raise _refuse(self.archive, name, "paths outside its folder")
        return rel, self.root.joinpath(*rel.parts)

    def folder(self, name: str) -> None:
        _, p = self.path(name)
        self._parents(p)
        if not p.is_dir():
            if p.exists():
                raise _refuse(self.archive, name, "a folder and a file of the same name")
            p.mkdir(mode=0o755)
        os.chmod(p, 0o755)

    def file(self, name: str, src: IO[bytes], mode: int) -> None:
        rel, p = self.path(name)
        self._parents(p)
        if p.is_dir():
            raise _refuse(self.archive, name, "a folder and a file of the same name")
        p.unlink(missing_ok=True)  # a later member of the same name wins, as tar does
        with _new_file(p, (mode & 0o755) | 0o644) as out:
            self.left -= _copy(src, out, self.archive, name, self.left)
        self.files[rel] = p

    def hardlink(self, name: str, target: str) -> None:
        """A hard link to a file unpacked before it: a copy of that file."""
        to = _member(target)
        if to is None or to not in self.files:
            raise _refuse(self.archive, name, "a link to a file outside the archive")
        with self.files[to].open("rb") as src:
            self.file(name, src, stat.S_IMODE(self.files[to].stat().st_mode))

    def _parents(self, p: Path) -> None:
        for parent in reversed(p.relative_to(self.root).parents[:-1]):
            d = self.root / parent
            if d.is_symlink() or (d.exists() and not d.is_dir()):
                raise _refuse(self.archive, str(parent), "a file where a folder goes")
            if not d.exists():
                d.mkdir(mode=0o755)


def _untar(archive: Path, into: Path, name: str) -> None:
    w = _Writer(into, name)
    with tarfile.open(archive) as tf:
        for m in tf:
            if m.isdir():
                w.folder(m.name)
            elif m.isreg():
                src = tf.extractfile(m)
                assert src is not None  # a regular member always has data
                w.file(m.name, src, m.mode)
            elif m.islnk():
                w.hardlink(m.name, m.linkname)
            else:  # symbolic links, devices, FIFOs: no library's data needs them
                kind = ("a symbolic link" if m.issym() else "a device" if m.isdev() and
                        not m.isfifo() else "a FIFO" if m.isfifo() else "an unknown member")
                raise _refuse(name, m.name, kind)


def _unzip(archive: Path, into: Path, name: str) -> None:
    w = _Writer(into, name)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            unix = info.external_attr >> 16
            kind = stat.S_IFMT(unix)
            if info.is_dir() and kind in (0, stat.S_IFDIR):
                w.folder(info.filename)
            elif kind in (0, stat.S_IFREG) and not info.is_dir():
                with zf.open(info) as src:
                    w.file(info.filename, src, stat.S_IMODE(unix) or 0o644)
            else:
                raise _refuse(name, info.filename, "a symbolic link" if stat.S_ISLNK(unix)
                              else "a member that is not a file or a folder")
