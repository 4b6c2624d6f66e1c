"""The bundle file `labctl save` writes and `labctl load` reads: one zstd stream (multi-
threaded, with frame checksums) holding a tar whose members are the lab folder's files
(`lab/`), optional datasets (`data/`) and wheels (`wheelhouse/`), the engine's own
`docker save` members (`docker/`: each layer once however many images share it), and,
last, the manifest: labctl version, images, layers, and the SHA-256 and size of every
member. Both directions stream: memory stays bounded, no full-size tar is written.

After the zstd frame comes one skippable frame (zstd tools pass over it), the layer
index: each layer member's diff id, read from the end of the file before the first layer
so that a load sends the engine only the layers it lacks. It is checked against the
manifest like everything else before the images' stream ends.

Pure: no engine. The tar headers are written by hand (TarInfo.tobuf) so that a member's
data goes from its source to the compressor in chunks, never whole into memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import queue
import re
import struct
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import zstandard
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.data.hfref import BLOB, COMMIT, parse_ref
from labctl.errors import LabError

# 2: the layer index after the frame. A labctl that reads only 1 would call the index
# damage; the head, which it reads first, names the format instead.
FORMAT = "labctl-bundle/2"
READS = (FORMAT, "labctl-bundle/1")
MANIFEST = "labctl-bundle.json"
HEAD = "labctl-bundle-head.json"
BLOCK = 512
CHUNK = 1 << 20
LEGACY_LAYER = "/layer.tar"  # docker save before 25: <v1 id>/layer.tar
OCI_BLOB = "blobs/sha256/"  # docker save 25+: blobs/sha256/<digest>, a layer's is its diff id
SKIPPABLE = 0x184D2A5C  # a zstd skippable frame's magic (any of 0x184D2A50-5F)
INDEX_TAG = b"labctlix"  # the last 8 bytes of a bundle with a layer index
INDEX_LIMIT = 16 << 20
# What an untrusted bundle may make a load hold or unpack (a bundle is a classmate's file):
DOC_LIMIT = 16 << 20  # the head, the manifest, a tar extension header
LAB_FILE_LIMIT = 16 << 20  # one file of the lab folder (specs, locks, scripts: KBs)
RATIO_LIMIT = 2000  # decompressed bytes per byte of the file (layers: ~3; zeros: 32768)
RATIO_SLACK = 64 << 20  # ... plus this much, for a tiny bundle
WINDOW_LIMIT = 1 << 25  # zstd's window: labctl writes level 3 (2 MiB); 32 MiB at most
SLICE = 2048  # compressed bytes per decompress() call: at most 64 MiB come out of one
# The lab files a bundle may carry: what lab_files() saves, nothing of .labctl/ (tokens)
LAB_TOP = ("volumes.yaml", "labctl.yaml", "datasets.yaml")


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
    torch: str | None = None  # the torch wheel it holds: "2.10.0+cu128", "2.10.0+cpu"


class BundleData(_Model):
    entry: str  # the catalogue entry
    file: str  # its file's name
    member: str


class BundleHf(_Model):
    """A Hugging Face repository's snapshot from the lab's hub cache, without links: its
    files by path, each naming its blob (member hf/FOLDER/BLOB, carried once); a load
    writes the blobs and makes the snapshot's links to them again, as huggingface_hub
    lays them out."""

    repo: str  # hf:ORG/NAME or hf:datasets/ORG/NAME
    revision: str  # what `labctl data get` was asked for: main, a tag or the commit
    commit: str
    folder: str  # the hub cache's folder: models--ORG--NAME
    files: dict[str, str]  # path in the snapshot -> blob name

    def member(self, blob: str) -> str:
        return f"hf/{self.folder}/{blob}"

    def members(self) -> set[str]:
        return {self.member(b) for b in self.files.values()}


class Head(_Model):
    """What the bundle holds, known before its layers: the first member, so that a load
    decides what it may write before the images stream to the engine."""

    format: str = FORMAT
    labctl: str
    created: str
    images: list[BundleImage]
    lab_files: list[str]  # paths relative to the lab folder
    data: list[BundleData] = Field(default_factory=list)
    hf: list[BundleHf] = Field(default_factory=list)
    wheels: list[str] = Field(default_factory=list)
    # --since: the lab files as the earlier bundle had them (path -> SHA-256): a file the
    # learner left as it was loaded is updated, one they changed is theirs
    replaces: dict[str, str] = Field(default_factory=dict)
    # --since: the chain ids of the layer stacks of the earlier bundle's images: the layers
    # this bundle leaves out are among them, so the target must have those
    since_chains: list[str] = Field(default_factory=list)


class Manifest(Head):
    layers: dict[str, str]  # docker member -> diff id, for the layers in this bundle
    omitted: dict[str, str] = Field(default_factory=dict)  # left out (--since): member -> diff id
    members: dict[str, Member]

    def docker_bytes(self) -> int:
        return sum(m.size for n, m in self.members.items() if n.startswith("docker/"))


T = TypeVar("T")


class Worker:
    """One daemon thread running calls in order: a ThreadPoolExecutor's threads are joined
    at interpreter exit, so a Ctrl-C waited there for whatever they were doing (50 s of
    image inspects once). A daemon thread ends with the process."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name=self._name)
                self._thread.start()
        self._queue.put((fut, fn, args))
        return fut

    def _run(self) -> None:
        while True:
            fut, fn, args = self._queue.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # handed to whoever waits on it
                fut.set_exception(e)


class _Hash:
    """SHA-256 on a worker thread: hashlib lets go of the GIL on large updates, so hashing
    a layer overlaps with reading, decompressing and compressing it (on two cores the
    difference between keeping up with the docker CLI or not)."""

    _pool = Worker("labctl-sha256")

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._last: Future[None] | None = None

    def update(self, chunk: bytes | memoryview) -> None:
        if len(chunk) < 1 << 16:  # a small one costs less here than a hand-over
            if self._last is not None:
                self._last.result()
            self._h.update(chunk)
            return
        self._last = self._pool.submit(self._h.update, chunk)

    def hexdigest(self) -> str:
        if self._last is not None:
            self._last.result()
        return self._h.hexdigest()


def is_layer(member: str, diff_ids: set[str]) -> bool:
    """A docker save member that holds a layer, in either format."""
    if member.endswith(LEGACY_LAYER):
        return True
    return member.startswith(OCI_BLOB) and "sha256:" + member[len(OCI_BLOB):] in diff_ids


def layer_diff_ids(docs: dict[str, bytes]) -> dict[str, str]:
    """Each layer member of a `docker save` and its diff id (the SHA-256 of the layer's
    tar), from the save's own manifest.json and image configs: a layer's checksum need not
    be computed again on the way into a bundle (a load still computes it, and the engine
    too). ``docs``: the save's small members by name."""
    out: dict[str, str] = {}
    try:
        for entry in json.loads(docs["manifest.json"]):
            config = json.loads(docs[entry["Config"]])
            for member, diff_id in zip(entry["Layers"], config["rootfs"]["diff_ids"],
                                       strict=True):
                out[member] = diff_id
    except (KeyError, TypeError, ValueError) as e:
        raise LabError(f"the engine's save has no usable manifest.json ({e!r})",
                       id="bundle.bad-engine-save",
                       fix="report this with `labctl doctor --json`; `docker save` works"
                           " meanwhile") from None
    return out


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


class Writer:
    """Members into a zstd-compressed tar, each hashed on the way; the manifest last."""

    def __init__(self, sink: IO[bytes], *, level: int = 3, threads: int = -1,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
        self._sink = sink
        self._out = cctx.stream_writer(sink, closefd=False)
        self._on_bytes = on_bytes or (lambda n: None)
        self.members: dict[str, Member] = {}

    def add(self, name: str, chunks: Iterable[bytes | memoryview], size: int, *, mode: int = 0o644,
            mtime: int = 0, hashed: bool = True) -> str:
        """A regular file of ``size`` bytes from ``chunks``; returns its SHA-256.
        ``hashed=False``: the caller knows it and tells it with settle() (a layer's is its
        diff id)."""
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, mtime
        self._out.write(_header(info))
        h, done = _Hash(), 0
        for chunk in chunks:
            if hashed:
                h.update(chunk)
            self._out.write(chunk)
            done += len(chunk)
            self._on_bytes(len(chunk))
        if done != size:
            raise LabError(f"{name}: {done} bytes read where {size} were announced",
                           id="bundle.source-changed",
                           fix="the source changed while it was saved; run the save again")
        self._out.write(_pad(size))
        sha = h.hexdigest() if hashed else ""
        self.members[name] = Member(sha256=sha, size=size)
        return sha

    def settle(self, name: str, sha256: str) -> None:
        """The checksum of a member added with hashed=False."""
        self.members[name] = Member(sha256=sha256, size=self.members[name].size)

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

    def head(self, head: Head) -> None:
        self.add_bytes(HEAD, head.model_dump_json(indent=1).encode())

    def close(self, head: Head, layers: dict[str, str], omitted: dict[str, str]) -> Manifest:
        """Write the manifest (with every member's checksum), end the stream, and add the
        layer index after it."""
        unsettled = [n for n, m in self.members.items() if not m.sha256]
        if unsettled:
            raise LabError(f"no checksum for {', '.join(unsettled[:3])}: the engine's save"
                           " named no diff id for it", id="bundle.bad-engine-save",
                           fix="report this with `labctl doctor --json`; `docker save` works"
                               " meanwhile")
        m = Manifest(**head.model_dump(), layers=layers, omitted=omitted,
                     members=dict(self.members))
        data = m.model_dump_json(indent=1).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        self._out.write(_header(info) + data + _pad(len(data)) + b"\0" * (2 * BLOCK))
        self._out.close()
        self._sink.write(index_frame(layers))
        return m


def index_frame(layers: dict[str, str]) -> bytes:
    """The layer index as a zstd skippable frame whose last 12 bytes say its length."""
    data = json.dumps(layers, sort_keys=True).encode()
    payload = data + struct.pack("<I", len(data)) + INDEX_TAG
    return struct.pack("<II", SKIPPABLE, len(payload)) + payload


def _index_of(frame: bytes) -> dict[str, str] | None:
    """The layer index in ``frame`` (a whole skippable frame), or None if it is none."""
    if len(frame) < 20 or frame[-8:] != INDEX_TAG:
        return None
    magic, size = struct.unpack("<II", frame[:8])
    (n,) = struct.unpack("<I", frame[-12:-8])
    if magic != SKIPPABLE or size != len(frame) - 8 or n != size - 12:
        return None
    try:
        index = json.loads(frame[8:8 + n])
    except ValueError:
        return None
    ok = isinstance(index, dict) and all(isinstance(v, str) for v in index.values())
    return index if ok else None


def read_index(f: IO[bytes]) -> dict[str, str] | None:
    """The layer index from the end of a seekable bundle (None: none there, as in a bundle
    of an earlier labctl, or not readable); ``f`` is left where it was."""
    if not f.seekable():
        return None
    pos = f.tell()
    try:
        end = f.seek(0, io.SEEK_END)
        if end < 20:
            return None
        f.seek(end - 12)
        tail = f.read(12)
        (n,) = struct.unpack("<I", tail[:4])
        if tail[4:] != INDEX_TAG or n + 20 > min(end, INDEX_LIMIT):
            return None
        f.seek(end - n - 20)
        return _index_of(f.read(n + 20))
    finally:
        f.seek(pos)


class ReadAhead:
    """An iterator of byte chunks run on a worker thread, up to ``ahead`` chunks before its
    reader: the source starts at once (a request goes out, a decompressor runs) and
    overlaps with whatever the reader does meanwhile. The source's error is raised to the
    reader; close() stops the worker."""

    def __init__(self, source: Iterable[bytes], *, ahead: int = 8,
                 name: str = "labctl-read-ahead",
                 on_close: Callable[[], None] | None = None) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(ahead)
        self._stop = threading.Event()
        self._on_close = on_close  # what unblocks a source waiting on I/O
        threading.Thread(target=self._run, args=(source,), daemon=True, name=name).start()

    def _run(self, source: Iterable[bytes]) -> None:
        try:
            for chunk in source:
                if not self._put(chunk):
                    return
            self._put(None)
        except BaseException as e:  # handed to the reader, raised there
            self._put(e)

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> bytes:
        item = self._queue.get()
        if item is None:
            self._queue.put(None)  # the end stays the end
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        if self._on_close is not None:
            self._on_close()


class _Source:
    """A tar stream over an iterator of chunks, for walk(): the parts tarfile's header
    parsing (TarInfo.fromtarfile) reads from a TarFile, and the data as views."""

    encoding, errors = "utf-8", "surrogateescape"

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it, self._buf, self._at = chunks, memoryview(b""), 0
        self.fileobj, self.pax_headers, self.offset = self, {}, 0  # offset: the next header

    def _fill(self) -> bool:
        while not len(self._buf):
            try:
                self._buf = memoryview(next(self._it))
            except StopIteration:
                return False
        return True

    def views(self, n: int) -> Iterator[memoryview]:
        while n > 0:
            if not self._fill():
                raise tarfile.ReadError("unexpected end of data")
            part, self._buf = self._buf[:n], self._buf[n:]
            n -= len(part)
            self._at += len(part)
            yield part

    def read(self, n: int) -> bytes:
        if n > DOC_LIMIT:  # tarfile reads a long name or pax header whole: not 1 GB of one
            raise tarfile.ReadError(f"a tar header of {n} bytes at byte {self._at}")
        out = bytearray()
        while len(out) < n and self._fill():
            part, self._buf = self._buf[:n - len(out)], self._buf[n - len(out):]
            out += part
        self._at += len(out)
        return bytes(out)

    def tell(self) -> int:
        return self._at

    def skip_to(self, offset: int | None = None) -> None:
        """On to ``offset`` (None: the end of the source), whatever was left unread."""
        while (offset is None or self._at < offset) and self._fill():
            n = len(self._buf) if offset is None else min(len(self._buf), offset - self._at)
            self._buf = self._buf[n:]
            self._at += n
        if offset is not None and self._at < offset:
            raise tarfile.ReadError("unexpected end of data")


def walk(chunks: Iterable[bytes]) -> Iterator[tuple[tarfile.TarInfo, Iterator[memoryview]]]:
    """The members of a tar stream, each with its data as views of the chunks it came in:
    tarfile's stream mode copies every byte several times, which made a third of a save's
    time. Data a caller leaves unread is skipped; after the end of the archive the source
    is read to its end (a zstd frame's checksum, the rest of an HTTP body). The source is
    closed at the end, where it can be."""
    it = iter(chunks)
    src = _Source(it)
    try:
        while True:
            try:
                info = tarfile.TarInfo.fromtarfile(src)  # type: ignore[arg-type]
            except tarfile.EOFHeaderError:  # the zero block that ends an archive
                break
            except tarfile.HeaderError as e:
                raise tarfile.ReadError(f"a broken tar header at byte {src.tell()}: {e}"
                                        ) from None
            if info.sparse is not None:  # neither docker nor labctl writes one
                raise tarfile.ReadError(f"{info.name}: a sparse file, which is not read here")
            yield info, src.views(info.size if info.isreg() else 0)
            src.skip_to(src.offset)  # the next header, past what was left unread
        src.skip_to()
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _decompressed(source: IO[bytes], limit: int | None = None
                  ) -> Iterator[bytes | memoryview]:
    """The bundle's zstd frame, decompressed block by block. The end of the file before
    the end of the frame is an error: a cut file is never taken for a whole one; after it
    comes the layer index or nothing. ``limit``: the most bytes it may decompress to.

    A zstd block of 4 bytes can say "128 KiB of zeros": a bundle of 33 KB held 1 GB. So the
    input goes in small slices (one call makes 64 MiB at most, 8 MiB once the data
    unpacks that much; ~700 MB/s on one core, well ahead of an engine's load), what comes
    out is counted as it comes, and the window a frame asks for is capped."""
    d = zstandard.ZstdDecompressor(max_window_size=WINDOW_LIMIT).decompressobj()
    done, out, held, step = 0, [], 0, SLICE
    rest = b""
    while not d.eof:
        block = source.read(CHUNK)
        if not block:
            raise damaged("the file ends before its compressed stream does: it was cut short")
        view, at = memoryview(block), 0
        while at < len(view):
            data = d.decompress(view[at:at + step])
            at += step
            # zeros (or a bomb) come out 32768 times their size: smaller slices then
            step = SLICE // 8 if len(data) > 256 * step else SLICE
            done += len(data)
            if limit is not None and done > limit:
                raise damaged(f"it unpacks to more than {limit} bytes, {RATIO_LIMIT} times its"
                              " size: not a bundle labctl wrote")
            if len(data) >= CHUNK:  # handed on in views: the queue holds no 64 MiB chunks
                if out:
                    yield b"".join(out)
                    out, held = [], 0
                view_out = memoryview(data)
                for i in range(0, len(data), CHUNK):
                    yield view_out[i:i + CHUNK]
            elif data:
                out.append(data)
                held += len(data)
                if held >= CHUNK:
                    yield b"".join(out)
                    out, held = [], 0
            if d.eof:
                rest = bytes(view[at:])  # the layer index, or nothing
                break
    if out:
        yield b"".join(out)
    rest = d.unused_data + rest
    rest += source.read(INDEX_LIMIT + 1 - len(rest)) if len(rest) <= INDEX_LIMIT else b""
    if rest and _index_of(rest) is None:
        raise damaged("data after the end of the bundle")


def unpack_limit(source: IO[bytes]) -> int | None:
    """How many bytes a bundle of this file's size may unpack to (None: not seekable)."""
    if not source.seekable():
        return None
    pos = source.tell()
    try:
        return source.seek(0, io.SEEK_END) * RATIO_LIMIT + RATIO_SLACK
    finally:
        source.seek(pos)


@contextmanager
def reading() -> Iterator[None]:
    """Errors of a damaged bundle, wherever its data is read, as one clear LabError."""
    try:
        yield
    except (zstandard.ZstdError, tarfile.TarError, EOFError, UnicodeError) as e:
        raise damaged(f"{type(e).__name__}: {e}") from e


def read(source: IO[bytes]) -> Iterator[tuple[tarfile.TarInfo, Iterator[memoryview]]]:
    """The members of a bundle in order, each with its data, streamed. Read their data
    inside ``reading()``."""
    # decompressed on a worker thread (zstd lets go of the GIL): it overlaps with hashing
    # and sending; walk() closes it, which stops the worker
    with reading():
        yield from walk(ReadAhead(_decompressed(source, unpack_limit(source)),
                                  name="labctl-unzstd"))


def chunks(f: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: f.read(CHUNK), b"")


def damaged(why: str) -> LabError:
    return LabError(f"the bundle is damaged or incomplete ({why}); nothing was loaded",
                    id="bundle.damaged",
                    fix="copy the file again (compare `sha256sum` of both copies) or save it"
                        " again with `labctl save`")


def path_problem(name: str) -> str | None:
    """Why a member name must not become a path (None: it may): a bundle is untrusted."""
    if not name:
        return "an empty path"
    if name.startswith("/"):
        return "an absolute path"
    if any(p in ("", ".", "..") for p in name.split("/")):
        return "a path with an empty, '.' or '..' part"
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or "\\" in name:
        return "a path with a control character or a backslash"
    return None


def lab_file_problem(rel: str) -> str | None:
    """Why ``rel`` is not a lab file a bundle may carry: exactly what lab_files() saves,
    images/** without hidden parts, and the three top-level files; never .labctl/."""
    why = path_problem(rel)
    if why:
        return why
    parts = rel.split("/")
    if rel in LAB_TOP:
        return None
    if parts[0] != "images" or len(parts) < 2:
        return f"not a lab file a bundle carries (images/**, {', '.join(LAB_TOP)})"
    if any(p.startswith(".") for p in parts) or "__pycache__" in parts or rel.endswith(".pyc"):
        return "a hidden or cache file, which a save leaves out"
    return None


def _one_part(name: str, what: str) -> None:
    if path_problem(name) or "/" in name or name.startswith("."):
        raise refused(f"{what} {name!r} is not a plain file name")


def check_head(head: Head) -> None:
    """What a head may name, refused before anything is read on: a file outside the lab
    folder, labctl's own .labctl/ files, a data file or wheel with a path in its name."""
    from labctl.config import validators as v  # pure; imported where it is needed

    seen: set[str] = set()
    for rel in head.lab_files:
        why = lab_file_problem(rel)
        if why:
            raise refused(f"lab/{rel}: {why}")
        if rel in seen:
            raise refused(f"lab/{rel} twice")
        seen.add(rel)
    for rel in head.lab_files:  # a file and a folder of the same name
        parent = rel.rpartition("/")[0]
        while parent:
            if parent in seen:
                raise refused(f"lab/{parent} is both a file and the folder of lab/{rel}")
            parent = parent.rpartition("/")[0]
    members = set()
    for d in head.data:
        _one_part(d.entry, "the data entry")
        _one_part(d.file, "the data file")
        if d.member != f"data/{d.entry}/{d.file}" or d.member in members:
            raise refused(f"the data member {d.member!r} is not data/{d.entry}/{d.file}"
                          " (once)")
        members.add(d.member)
    _check_hf(head.hf)
    for w in head.wheels:
        _one_part(w, "the wheel")
        if not w.endswith(".whl"):
            raise refused(f"the wheel {w!r} is no .whl file")
    if len(set(head.wheels)) != len(head.wheels):
        raise refused("a wheel named twice")
    names = set()
    for img in head.images:
        try:
            v.name(img.name)
        except ValueError as e:
            raise refused(f"the image name: {e}") from None
        if img.name in names or not _IMAGE_ID.fullmatch(img.id):
            raise refused(f"the image {img.name}: named twice, or its id {img.id!r} is no"
                          " sha256:HEX")
        names.add(img.name)


_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def _check_hf(snaps: list[BundleHf]) -> None:
    """A Hugging Face snapshot names its repository and revision as the command line
    would, the hub cache's own folder of that repository, a commit, and files whose
    paths stay inside the snapshot and whose blobs are hashes: nothing else is written."""
    seen = set()
    for h in snaps:
        try:
            ref = parse_ref(f"{h.repo}@{h.revision}")
        except LabError as e:
            raise refused(f"the Hugging Face repository: {e.message}") from None
        if "@" in h.repo or h.folder != ref.folder or not COMMIT.fullmatch(h.commit):
            raise refused(f"the Hugging Face snapshot {h.repo!r}: its folder {h.folder!r} or"
                          f" commit {h.commit!r} is not the repository's")
        if h.folder in seen:
            raise refused(f"the Hugging Face repository {h.repo} twice")
        seen.add(h.folder)
        for rel, blob in h.files.items():
            why = path_problem(rel) or (
                "too long a path" if len(rel) > 1024 or max(map(len, rel.split("/"))) > 200
                else None)
            if why or not BLOB.fullmatch(blob):
                raise refused(f"the Hugging Face file {rel!r} ({why or f'blob {blob!r}'})")
        for rel in h.files:
            parent = rel.rpartition("/")[0]
            while parent:
                if parent in h.files:
                    raise refused(f"{parent} is both a file and the folder of {rel}")
                parent = parent.rpartition("/")[0]


def member_problem(info: tarfile.TarInfo, head: Head, named: set[str] | None = None
                   ) -> str | None:
    """Why a bundle member is refused (None: it is one labctl writes): its kind by its
    prefix, a regular file where a file is written, the name the head gives it.
    ``named``: files_named(head), made once by a reader of many members."""
    name = info.name
    kind, _, rel = name.partition("/")
    if kind == "docker":
        why = path_problem(rel)
        if why:
            return why
        if info.issym():
            target = info.linkname
            where = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            if not target or target.startswith("/") or where == ".." or \
                    where.startswith("../"):
                return f"a link out of the images' folder ({target})"
        elif not (info.isreg() or info.isdir()):
            return "neither a file, a folder nor a link"
        return None
    if kind not in ("lab", "data", "hf", "wheelhouse") or name in (HEAD, MANIFEST):
        return "not a member labctl writes"
    if not info.isreg():
        return "not a regular file (a link, device, fifo or folder)"
    if name not in (files_named(head) if named is None else named):
        what = {"lab": "lab file", "data": "data file", "hf": "Hugging Face blob"}
        return f"a {what.get(kind, 'wheel')} the head does not name"
    if kind == "lab" and info.size > LAB_FILE_LIMIT:
        return f"a lab file of {info.size} bytes (at most {LAB_FILE_LIMIT})"
    return None


def files_named(head: Head) -> set[str]:
    """The members before the images that ``head`` names: lab files, data, HF blobs,
    wheels."""
    return ({f"lab/{r}" for r in head.lab_files} | {d.member for d in head.data}
            | {m for h in head.hf for m in h.members()} | {f"wheelhouse/{w}" for w in head.wheels})


def refused(why: str) -> LabError:
    """A member or head that `labctl save` never writes: made by hand, maybe to harm."""
    return LabError(f"the bundle is damaged or incomplete ({why}); nothing was loaded",
                    id="bundle.hand-made",
                    fix="labctl save never writes this: do not load the file; ask its sender"
                        " for a bundle saved again with `labctl save`")


class Reader:
    """One pass over a bundle: each member hashed as it is read, the head first, the
    manifest last; ``check()`` compares the two ends. A load streams the docker members
    on to the engine and holds the rest until the check has passed. Every member is
    checked against the head (its name, its kind, its size) before it is handed on."""

    def __init__(self, source: IO[bytes], on_bytes: Callable[[int], None] | None = None
                 ) -> None:
        # before the first read: what the load may leave out is known before the layers
        self.index = read_index(source)
        self._members = read(source)
        self._note = on_bytes or (lambda n: None)
        self.seen: dict[str, Member] = {}
        self._names: set[str] = set()
        self.head: Head | None = None
        self._named: set[str] = set()  # what the head names (files_named)
        self.manifest: Manifest | None = None

    def members(self) -> Iterator[tuple[tarfile.TarInfo, Iterator[memoryview]]]:
        """(member, its data in chunks, hashed as they are taken); directories have none.
        The head comes first: the caller reads it (read_head) before the next member."""
        for info, f in self._members:
            if not self.seen and info.name != HEAD:
                raise damaged(f"it starts with {info.name}, not with its head")
            if self.manifest is not None:
                raise damaged(f"{info.name} after the manifest")
            if info.name in self._names:
                raise damaged(f"{info.name} twice")
            self._names.add(info.name)
            if info.name in (HEAD, MANIFEST):
                if not info.isreg() or info.size > DOC_LIMIT:
                    raise damaged(f"its {info.name} is no file, or larger than {DOC_LIMIT}"
                                  " bytes")
            elif self.head is not None:
                why = member_problem(info, self.head, self._named)
                if why:
                    raise refused(f"{info.name!r}: {why}")
            if info.name == MANIFEST:
                self.manifest = _model(Manifest, b"".join(f), "manifest")
                continue
            if info.isdir():
                yield info, iter(())
                continue
            data = self._hashed(info, f)
            yield info, data
            for _ in data:  # whatever the caller left unread still counts
                pass
            if info.name == HEAD and self.head is None:
                raise damaged("the head was not read")

    def _hashed(self, info: tarfile.TarInfo, data: Iterator[memoryview]
                ) -> Iterator[memoryview]:
        h = _Hash()
        for chunk in data:
            h.update(chunk)
            self._note(len(chunk))
            yield chunk
        self.seen[info.name] = Member(sha256=h.hexdigest(), size=info.size,
                                      link=info.linkname if info.issym() else None)

    def read_head(self, info: tarfile.TarInfo, data: Iterable[bytes | memoryview]) -> Head:
        head = _model(Head, b"".join(data), "head")
        if head.format not in READS:
            raise LabError(f"this bundle is {head.format}; this labctl reads"
                           f" {' and '.join(READS)}",
                           id="bundle.format-unsupported", fix=f"load it with labctl {head.labctl}")
        check_head(head)
        self.head, self._named = head, files_named(head)
        return head

    def check(self) -> Manifest:
        """After the last member: every member as the manifest says, nothing missing or
        extra, and the head the one the manifest describes."""
        m = self.manifest
        if m is None:
            raise damaged("no manifest at its end: the file was cut short")
        bad = sorted(n for n in set(self.seen) | set(m.members)
                     if self.seen.get(n) != m.members.get(n))
        if bad:
            raise damaged(f"{len(bad)} member(s) differ from the manifest: {', '.join(bad[:5])}")
        if self.head is None or self.head != Head(**m.model_dump(include=set(Head.model_fields))):
            raise damaged("its head and its manifest disagree")
        want = files_named(m)
        have = {n for n in self.seen if n.startswith(("lab/", "data/", "hf/", "wheelhouse/"))}
        if want != have:
            raise damaged("its files are not the ones its head names: "
                          + ", ".join(sorted(want ^ have)[:5]))
        if self.index is not None and self.index != m.layers:
            raise damaged("its layer index and its manifest disagree")
        wrong = [n for n, d in m.layers.items()  # a layer's checksum is its diff id
                 if m.members.get(f"docker/{n}", Member(sha256="", size=0)).sha256
                 != d.removeprefix("sha256:")]
        if wrong:
            raise damaged(f"the diff ids of {', '.join(wrong[:3])} are not their checksums")
        return m


def _model(model: type[Any], data: bytes, what: str) -> Any:
    try:
        return model.model_validate(json.loads(data))
    except (ValueError, ValidationError) as e:
        raise damaged(f"unreadable {what}: {str(e).splitlines()[0]}") from e


def verify(source: IO[bytes], on_bytes: Callable[[int], None] | None = None) -> Manifest:
    """Read the whole bundle once and check it (LabError if it is not whole)."""
    with reading():
        r = Reader(source, on_bytes)
        for info, data in r.members():
            if info.name == HEAD:
                r.read_head(info, data)
        return r.check()


def docker_member(info: tarfile.TarInfo, data: Iterable[bytes | memoryview]
                  ) -> Iterator[bytes | memoryview]:
    """A `docker/` member as the engine's tar stream holds it (the prefix taken off)."""
    out = tarfile.TarInfo(info.name[len("docker/"):])
    out.type, out.mode, out.size, out.linkname = info.type, info.mode, info.size, info.linkname
    yield _header(out)
    yield from data
    yield _pad(info.size if info.isfile() else 0)


END = b"\0" * (2 * BLOCK)  # the end of a tar
# Not a tar header (its checksum is wrong): the engine's load fails on it before it loads
# anything, since it unpacks the whole stream first.
REFUSE = b"labctl: refused" + b"\xff" * (BLOCK - 15)


# The docker save files that carry tags: the engine applies them on load, so a bundle
# could re-point any tag of the machine (debian:bookworm, another lab's). They go to the
# engine with no tag; labctl tags by id, and only this lab's tags.
ENGINE_DOCS = ("manifest.json", "repositories", "index.json")
ENGINE_DOC_LIMIT = 1 << 20
_CONFIG = re.compile(r"(?:blobs/sha256/([0-9a-f]{64})|([0-9a-f]{64})\.json)")
_NAME_KEYS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


def untagged(member: str, data: bytes) -> tuple[bytes, set[str]]:
    """A docker save's ``member`` (one of ENGINE_DOCS) without any tag, and the image ids
    its manifest.json names (each image's config digest)."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise damaged(f"docker/{member}: not JSON ({e})") from None
    ids: set[str] = set()
    if member == "repositories":
        return b"{}", ids
    if member == "manifest.json":
        if not isinstance(doc, list):
            raise damaged("docker/manifest.json: not a list of images")
        for entry in doc:
            config = entry.get("Config") if isinstance(entry, dict) else None
            m = _CONFIG.fullmatch(config) if isinstance(config, str) else None
            if m is None:
                raise damaged(f"docker/manifest.json: an image whose Config is {config!r}")
            entry["RepoTags"] = None
            ids.add("sha256:" + (m.group(1) or m.group(2)))
    elif isinstance(doc, dict):  # index.json (docker 25+): names in annotations
        for entry in doc.get("manifests") or []:
            if isinstance(entry, dict) and isinstance(entry.get("annotations"), dict):
                for key in _NAME_KEYS:
                    entry["annotations"].pop(key, None)
    return json.dumps(doc).encode(), ids


def docker_doc(info: tarfile.TarInfo, data: bytes) -> bytes:
    """A rewritten `docker/` member (untagged()) as the engine's tar stream holds it."""
    out = tarfile.TarInfo(info.name[len("docker/"):])
    out.mode, out.size = info.mode, len(data)
    return _header(out) + data + _pad(len(data))
