"""The bundle file `labctl save` writes and `labctl load` reads: one zstd stream (multi-
threaded, with frame checksums) holding a tar whose members are the lab folder's files
(`lab/`), optional datasets (`data/`) and wheels (`wheelhouse/`), the engine's own
`docker save` members (`docker/`: each layer once however many images share it), and,
last, the manifest: labctl version, images, layers, and the SHA-256 and size of every
member. Both directions stream: memory stays bounded, no full-size tar is written.

Pure: no engine. The tar headers are written by hand (TarInfo.tobuf) so that a member's
data goes from its source to the compressor in chunks, never whole into memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import zstandard
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.errors import LabError

FORMAT = "labctl-bundle/1"
MANIFEST = "labctl-bundle.json"
BLOCK = 512
CHUNK = 1 << 20
LEGACY_LAYER = "/layer.tar"  # docker save before 25: <v1 id>/layer.tar
OCI_BLOB = "blobs/sha256/"  # docker save 25+: blobs/sha256/<digest>, a layer's is its diff id


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Member(_Model):
    sha256: str
    size: int
    link: str | None = None  # a symlink (docker save links a layer saved under another id)


class BundleImage(_Model):
    name: str  # the spec
    tag: str  # its tag on the machine that saved it
    id: str
    hash: str | None  # the spec hash label: what `labctl list` compares
    diff_ids: list[str]
    size: int


class BundleData(_Model):
    entry: str  # the catalogue entry
    file: str  # its file's name
    member: str


class Manifest(_Model):
    format: str = FORMAT
    labctl: str
    created: str
    images: list[BundleImage]
    lab_files: list[str]  # paths relative to the lab folder
    data: list[BundleData] = Field(default_factory=list)
    wheels: list[str] = Field(default_factory=list)
    layers: dict[str, str]  # docker member -> diff id, for the layers in this bundle
    omitted: dict[str, str] = Field(default_factory=dict)  # left out (--since): member -> diff id
    # --since: the lab files as the earlier bundle had them (path -> SHA-256): a file the
    # learner left as it was loaded is updated, one they changed is theirs
    replaces: dict[str, str] = Field(default_factory=dict)
    members: dict[str, Member]

    def docker_bytes(self) -> int:
        return sum(m.size for n, m in self.members.items() if n.startswith("docker/"))


def is_layer(member: str, diff_ids: set[str]) -> bool:
    """A docker save member that holds a layer, in either format."""
    if member.endswith(LEGACY_LAYER):
        return True
    return member.startswith(OCI_BLOB) and "sha256:" + member[len(OCI_BLOB):] in diff_ids


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


class Writer:
    """Members into a zstd-compressed tar, each hashed on the way; the manifest last."""

    def __init__(self, sink: IO[bytes], *, level: int = 3, threads: int = -1,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
        self._out = cctx.stream_writer(sink, closefd=False)
        self._on_bytes = on_bytes or (lambda n: None)
        self.members: dict[str, Member] = {}

    def add(self, name: str, chunks: Iterable[bytes], size: int, *, mode: int = 0o644,
            mtime: int = 0) -> str:
        """A regular file of ``size`` bytes from ``chunks``; returns its SHA-256."""
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, mtime
        self._out.write(_header(info))
        h, done = hashlib.sha256(), 0
        for chunk in chunks:
            h.update(chunk)
            self._out.write(chunk)
            done += len(chunk)
            self._on_bytes(len(chunk))
        if done != size:
            raise LabError(f"{name}: {done} bytes read where {size} were announced",
                           fix="the source changed while it was saved; run the save again")
        self._out.write(_pad(size))
        self.members[name] = Member(sha256=h.hexdigest(), size=size)
        return h.hexdigest()

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> str:
        return self.add(name, [data], len(data), mode=mode)

    def add_link(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self._out.write(_header(info))
        self.members[name] = Member(sha256=hashlib.sha256(b"").hexdigest(), size=0,
                                    link=target)

    def add_dir(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        self._out.write(_header(info))

    def close(self, manifest: dict[str, Any]) -> Manifest:
        """Write the manifest (with every member's checksum) and end the stream."""
        m = Manifest(**manifest, members=dict(self.members))
        data = m.model_dump_json(indent=1).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        self._out.write(_header(info) + data + _pad(len(data)) + b"\0" * (2 * BLOCK))
        self._out.close()
        return m


class _Decompressed(io.RawIOBase):
    """The bundle's zstd frame, decompressed as it is read. The end of the file before
    the end of the frame is an error: a cut file is never taken for a whole one."""

    def __init__(self, source: IO[bytes]) -> None:
        self._src, self._d, self._buf = source, zstandard.ZstdDecompressor().decompressobj(), b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            if self._d.eof:
                if self._d.unused_data or self._src.read(1):
                    raise damaged("data after the end of the bundle")
                return 0
            block = self._src.read(CHUNK)
            if not block:
                raise damaged("the file ends before its compressed stream does: it was cut"
                              " short")
            self._buf = self._d.decompress(block)
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


@contextmanager
def reading() -> Iterator[None]:
    """Errors of a damaged bundle, wherever its data is read, as one clear LabError."""
    try:
        yield
    except (zstandard.ZstdError, tarfile.TarError, EOFError) as e:
        raise damaged(f"{type(e).__name__}: {e}") from e


def read(source: IO[bytes]) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    """The members of a bundle in order, each with a reader of its data, streamed. Read
    their data inside ``reading()``."""
    raw = io.BufferedReader(_Decompressed(source), CHUNK)
    with reading():
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            for info in tar:
                yield info, tar.extractfile(info) if info.isfile() else None
        while raw.read(CHUNK):  # to the end of the frame and its checksum
            pass


def chunks(f: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: f.read(CHUNK), b"")


def damaged(why: str) -> LabError:
    return LabError(f"the bundle is damaged or incomplete ({why}); nothing was loaded",
                    fix="copy the file again (compare `sha256sum` of both copies) or save it"
                        " again with `labctl save`")


def verify(source: IO[bytes], on_bytes: Callable[[int], None] | None = None) -> Manifest:
    """Read the whole bundle once: every member's SHA-256 and size against the manifest,
    which must come last, and nothing missing or extra. Raises LabError otherwise."""
    with reading():
        return _verify(source, on_bytes or (lambda n: None))


def _verify(source: IO[bytes], note: Callable[[int], None]) -> Manifest:
    seen: dict[str, Member] = {}
    manifest: Manifest | None = None
    for info, f in read(source):
        if manifest is not None:
            raise damaged(f"{info.name} after the manifest")
        if info.name == MANIFEST and f is not None:
            try:
                manifest = Manifest.model_validate(json.loads(f.read()))
            except (ValueError, ValidationError) as e:
                raise damaged(f"unreadable manifest: {str(e).splitlines()[0]}") from e
            continue
        if info.isdir():
            continue
        h = hashlib.sha256()
        if f is not None:
            for chunk in chunks(f):
                h.update(chunk)
                note(len(chunk))
        seen[info.name] = Member(sha256=h.hexdigest(), size=info.size,
                                 link=info.linkname if info.issym() else None)
    if manifest is None:
        raise damaged("no manifest at its end: the file was cut short")
    if manifest.format != FORMAT:
        raise LabError(f"this bundle is {manifest.format}; this labctl reads {FORMAT}",
                       fix=f"load it with labctl {manifest.labctl}")
    bad = sorted(n for n in set(seen) | set(manifest.members)
                 if seen.get(n) != manifest.members.get(n))
    if bad:
        raise damaged(f"{len(bad)} member(s) differ from the manifest: {', '.join(bad[:5])}")
    return manifest


def docker_stream(source: IO[bytes], on_bytes: Callable[[int], None] | None = None
                  ) -> Iterator[bytes]:
    """The `docker/` members again as one tar stream, for the engine's image load."""
    note = on_bytes or (lambda n: None)
    with reading():
        yield from _docker_members(source, note)
    yield b"\0" * (2 * BLOCK)


def _docker_members(source: IO[bytes], note: Callable[[int], None]) -> Iterator[bytes]:
    for info, f in read(source):
        if not info.name.startswith("docker/"):
            continue
        out = tarfile.TarInfo(info.name[len("docker/"):])
        out.type, out.mode, out.size, out.linkname = info.type, info.mode, info.size, \
            info.linkname
        if not out.name:
            continue
        yield _header(out)
        if f is not None:
            for chunk in chunks(f):
                note(len(chunk))
                yield chunk
            yield _pad(info.size)
