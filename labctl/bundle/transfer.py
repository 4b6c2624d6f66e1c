"""`labctl save` and `labctl load`: carry labs to another machine as one file.

save: the lab folder's files (labctl.yaml without credentials), the chosen datasets and
wheels, and the images through the engine's multi-image `docker save` stream, into one
bundle (bundle/format.py), written under a temporary name and renamed when complete.
`since` leaves out the layers an earlier bundle already carried.

load: one read of the file, every checksum verified before the images' stream ends;
refuse when a file of the learner's would change or a left-out layer is missing on this
engine; send the engine only the layers it lacks (the bundle's layer index says which
member is which before the first one); write the files and tag the images for this lab
folder, so that `labctl list` shows them current.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from labctl import __version__, labels
from labctl.bundle import format as fmt
from labctl.chains import chain_ids, leading_present
from labctl.config import validators
from labctl.config.lab import (
    SETTINGS_FILE,
    VOLUMES_FILE,
    Lab,
    LabSettings,
    VolumesFile,
    _check_volumes,
    _from_env,
    _read_model,
)
from labctl.config.spec import load_spec
from labctl.data import catalogue, hf, store
from labctl.data.hfref import HfRef, is_ref, parse_ref
from labctl.engine import Engine
from labctl.errors import LabError

Progress = Callable[[str, int, int | None], None]  # (what, bytes done, bytes in all)
# scheme:// and the rest of the URL (to a space, a quote or the next scheme://)
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)((?:(?![a-z][a-z0-9+.-]*://)[^\s'\"<>])*)")


def _no_userinfo(m: re.Match[str]) -> str:
    scheme, rest = m.group(1), m.group(2)
    at = rest.find("@")
    if at < 0:
        return m.group(0)
    before = rest[:at]
    if "/" in before:  # a path with an @ (repo@v1.0), or a password with a /
        user, colon, _ = before.partition(":")
        if not colon or "/" in user:
            return m.group(0)
    # the userinfo ends at the last @ before the host's end: a password may hold @ and /
    slash = rest.find("/", at)
    end = rest.rfind("@", 0, slash if slash >= 0 else len(rest))
    return scheme + rest[end + 1:]


def strip_credentials(text: str) -> str:
    """Every URL's user:password@ removed (a password may hold / or @), comments and
    layout kept."""
    return _URL.sub(_no_userinfo, text)


def lab_files(lab: Lab, warnings: list[str] | None = None) -> list[str]:
    """What of the lab folder travels: specs, locks, checks and prepare scripts, the
    volumes, settings and the lab's own catalogue; exactly what a load accepts
    (fmt.lab_file_problem). Never .labctl/ (tokens), hidden files or volumes, and never a
    symlink: it could lead out of the lab folder (images/README -> ~/.ssh/id_rsa); each
    is named in ``warnings``."""
    root = lab.root
    out: list[str] = []

    def link(p: Path, rel: str) -> None:
        if warnings is not None:
            warnings.append(f"{rel} is a symlink (to {os.readlink(p)}): it is not saved; copy"
                            " the file into the lab folder to carry it")

    images = lab.images_dir
    if images.is_symlink():
        link(images, "images")
    elif images.is_dir():
        for p in sorted(images.rglob("*")):  # rglob does not go into a linked folder
            rel = p.relative_to(root).as_posix()
            if fmt.lab_file_problem(rel):
                continue
            if p.is_symlink():
                link(p, rel)
            elif p.is_file():
                out.append(rel)
    for n in (VOLUMES_FILE, SETTINGS_FILE, catalogue.LAB_FILE):
        if (root / n).is_symlink():
            link(root / n, n)
        elif (root / n).is_file():
            out.append(n)
    return out


def _read_lab_file(path: Path) -> bytes:
    """A lab file's bytes, never through a link put there since lab_files() looked."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


@dataclass
class SaveResult:
    path: Path
    size: int
    images: list[fmt.BundleImage]
    layers: int
    omitted: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"file": str(self.path), "bytes": self.size, "layers": self.layers,
                "omitted_layers": self.omitted, "seconds": round(self.seconds, 1),
                "images": [i.model_dump() for i in self.images]}


def read_manifest(path: Path, progress: Progress | None = None) -> fmt.Manifest:
    """A bundle's manifest, verified; or a manifest JSON (`labctl load --list --json`)."""
    if path.suffix == ".json":
        try:
            return fmt.Manifest.model_validate_json(path.read_bytes())
        except ValueError as e:
            raise LabError(f"{path}: not a labctl bundle manifest ({str(e).splitlines()[0]})",
                           id="bundle.not-a-manifest",
                           fix="give the bundle itself, or `labctl load --list FILE --json`"
                               " output") from e
    if not path.is_file():
        raise LabError(f"{path}: no such file",
                       id="bundle.not-found", fix="give the path of a labctl save bundle")
    total = path.stat().st_size
    with path.open("rb") as f:
        return fmt.verify(f, _counter("verifying", total, progress, lambda: f.tell()))


def _counter(what: str, total: int | None, progress: Progress | None,
             position: Callable[[], int] | None = None) -> Callable[[int], None]:
    done = 0

    def note(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(what, position() if position else done, total)
    return note


def save(engine: Engine, lab: Lab, names: list[str], out: Path, *,
         since: fmt.Manifest | Path | None = None, data: list[str] | None = None,
         wheelhouse: bool = False, progress: Progress | None = None) -> SaveResult:
    """``since``: an earlier bundle (verified while the engine exports) or its manifest."""
    t0 = time.monotonic()
    # The engine writes its whole export to disk before its first byte: ask for it first,
    # so that everything up to the first layer is done meanwhile (closed on any error).
    export = engine.save_images([lab.image_tag(n) for n in names])
    stream = fmt.ReadAhead(export, name="labctl-save", on_close=export.close)
    try:
        found = {}
        for name in names:
            tag = lab.image_tag(name)
            found[name] = engine.image(tag)
            if found[name] is None:
                raise LabError(f"{tag} is not built: there is nothing of {name} to save",
                               id="bundle.image-not-built", fix=f"labctl build {name}")
        entries = _data_files(lab, [n for n in data or [] if not is_ref(n)])
        snaps = [hf.snapshot(lab, parse_ref(n)) for n in dict.fromkeys(data or []) if is_ref(n)]
        wheels = _wheels(lab) if wheelhouse else []
        if isinstance(since, Path):
            since = read_manifest(since, progress)
        return _save(engine, lab, found, stream, out, _Options(entries, wheels, since, snaps),
                     progress=progress, t0=t0)
    finally:
        stream.close()


@dataclass(frozen=True)
class _Options:
    """save()'s keyword options, resolved (each checked) before the first byte is
    written: the data files and wheels to carry, the earlier bundle the target has."""

    entries: list[tuple[str, catalogue.DataFile, Path]]  # (entry, file, its path)
    wheels: list[Path]
    since: fmt.Manifest | None
    snaps: list[hf.Snapshot] = field(default_factory=list)  # Hugging Face repositories


@dataclass(frozen=True)
class _Export:
    """What save() keeps of the engine's stream while it copies it: the layers are told
    from the save's own files by ``diff_ids``; the dicts fill as the members pass."""

    diff_ids: set[str]  # the images' layers
    skip: dict[str, str]  # layer member -> diff id: the target has it (an earlier bundle's)
    layers: dict[str, str] = field(default_factory=dict)  # member -> diff id (at the end)
    omitted: dict[str, str] = field(default_factory=dict)  # member -> diff id, of skip
    docs: dict[str, bytes] = field(default_factory=dict)  # manifest.json, image configs


def _save(engine: Engine, lab: Lab, found: dict[str, Any], stream: Iterator[bytes],
          out: Path, opts: _Options, *, progress: Progress | None, t0: float) -> SaveResult:
    warnings: list[str] = []
    images = _bundle_images(lab, found, warnings)
    since = opts.since
    export = _Export(diff_ids={d for i in images for d in i.diff_ids},
                     skip=dict(since.layers) | dict(since.omitted) if since else {})
    total = engine.unique_size({i.id: i.size for i in images}) + \
        sum(p.stat().st_size for _, _, p in opts.entries) + \
        sum(p.stat().st_size for p in opts.wheels) + \
        sum(p.stat().st_size for sn in opts.snaps for p in sn.blobs.values())
    note = _counter("saving", total, progress)
    head = _head(images, lab_files(lab, warnings), opts)
    part = out.with_name(f".{out.name}.partial")
    try:
        with part.open("wb") as sink:
            w = fmt.Writer(sink, on_bytes=note)
            w.head(head)
            _save_files(w, lab, head, opts)
            for info, data in fmt.walk(stream):
                _save_member(w, info, data, export, note)
            known = fmt.layer_diff_ids(export.docs)
            for member in export.layers:
                export.layers[member] = known.get(member, "")
                if export.layers[member]:
                    w.settle(f"docker/{member}", export.layers[member].removeprefix("sha256:"))
            w.close(head, export.layers, export.omitted)
        os.replace(part, out)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return SaveResult(out, out.stat().st_size, images, len(export.layers),
                      len(export.omitted), time.monotonic() - t0, warnings)


def _bundle_images(lab: Lab, found: dict[str, Any], warnings: list[str]
                   ) -> list[fmt.BundleImage]:
    """The head's images, each as save() inspected it once; one older than its spec
    still travels (it is what was asked for), named in ``warnings``."""
    from labctl.image.listing import image_torch
    from labctl.image.render import render

    images = []
    for name, img in found.items():
        tag = lab.image_tag(name)
        spec = lab.spec(name)
        held = img.labels or {}
        current = held.get(labels.HASH) == render(lab, spec).digest
        if not current:
            warnings.append(f"{name}: the image is older than its spec; it travels as it is"
                            f" (run `labctl build {name}` first to carry the new one)")
        images.append(fmt.BundleImage(
            name=name, tag=tag, id=img.id, hash=held.get(labels.HASH),
            diff_ids=list(img.attrs["RootFS"]["Layers"]), size=int(img.attrs["Size"]),
            torch=image_torch(held, spec, "current" if current else "outdated")))
    return images


def _head(images: list[fmt.BundleImage], rels: list[str], opts: _Options) -> fmt.Head:
    """The bundle's head: everything a load checks before the first image byte, and,
    with ``since``, the lab files and layer chains the target already has."""
    since = opts.since
    return fmt.Head(
        labctl=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        images=images, lab_files=rels,
        data=[fmt.BundleData(entry=e, file=f.name, member=f"data/{e}/{f.name}")
              for e, f, _ in opts.entries],
        hf=[fmt.BundleHf(repo=HfRef(sn.ref.repo_id, sn.ref.repo_type).name,
                         revision=sn.ref.revision, commit=sn.commit, folder=sn.ref.folder,
                         files=sn.files) for sn in opts.snaps],
        wheels=[p.name for p in opts.wheels],
        replaces={r: since.members[f"lab/{r}"].sha256 for r in since.lab_files} if since else {},
        since_chains=sorted({c for i in since.images for c in chain_ids(i.diff_ids)})
        if since else [])


def _save_files(w: fmt.Writer, lab: Lab, head: fmt.Head, opts: _Options) -> None:
    """The members before the images, in the head's order: the lab files (without
    credentials), the data files, the Hugging Face blobs, the wheels."""
    for rel in head.lab_files:
        text = _read_lab_file(lab.root / rel)
        with contextlib.suppress(UnicodeDecodeError):  # every text file: specs too
            text = strip_credentials(text.decode("utf-8")).encode("utf-8")
        mode = 0o755 if os.access(lab.root / rel, os.X_OK) else 0o644
        w.add_bytes(f"lab/{rel}", text, mode=mode)
    for d, (_, _, path) in zip(head.data, opts.entries, strict=True):
        with path.open("rb") as src:
            w.add(d.member, fmt.chunks(src), path.stat().st_size)
    for h, sn in zip(head.hf, opts.snaps, strict=True):
        for blob, path in sn.blobs.items():
            with path.open("rb") as src:
                w.add(h.member(blob), fmt.chunks(src), path.stat().st_size)
    for p in opts.wheels:
        with p.open("rb") as src:
            w.add(f"wheelhouse/{p.name}", fmt.chunks(src), p.stat().st_size)


DOC_LIMIT = 1 << 20  # a larger member that is no layer is streamed (its JSON files are KBs)


def _save_member(w: fmt.Writer, info: tarfile.TarInfo, data: Iterator[memoryview],
                 export: _Export, note: Callable[[int], None]) -> None:
    name = f"docker/{info.name}"
    if info.isdir():
        w.add_dir(name)
    elif info.issym():
        w.add_link(name, info.linkname)
    elif not info.isfile():
        raise LabError(f"the engine's save holds {info.name}, which is neither a file, a"
                       " folder nor a link", id="bundle.bad-engine-save",
                       fix="report this with `labctl doctor --json`")
    elif fmt.is_layer(info.name, export.diff_ids):
        if info.name in export.skip:  # the target has it: an earlier bundle held it
            export.omitted[info.name] = export.skip[info.name]
            note(info.size)
            return
        # its checksum is its diff id, settled from the save's manifest at the end
        w.add(name, data, info.size, mode=info.mode, hashed=False)
        export.layers[info.name] = ""
    else:
        if info.size > DOC_LIMIT:  # not one of the save's own files: streamed, hashed
            w.add(name, data, info.size, mode=info.mode)
            return
        text = b"".join(data)
        w.add_bytes(name, text, mode=info.mode)
        if text[:1] in (b"{", b"["):  # manifest.json, image configs: read at the end
            export.docs[info.name] = text


def _data_files(lab: Lab, names: list[str]) -> list[tuple[str, catalogue.DataFile, Path]]:
    cat = catalogue.load(lab.root)
    out = []
    for name in names:
        entry = cat.entries.get(name)
        if entry is None:
            raise LabError(f"--with-data {name}: no such catalogue entry",
                           id="bundle.unknown-data-entry", fix="`labctl data list` shows the names")
        root = store.volume_root(lab, name, entry)
        for f in entry.files:
            st = store.state(root, name, f, verify=True)
            if not st.present:
                raise LabError(f"--with-data {name}: {f.name} is not in {lab.rel(st.path)}"
                               + (f" ({st.problem})" if st.problem else ""),
                               id="bundle.data-not-fetched", fix=f"labctl data get {name}")
            out.append((name, f, st.path))
    return out


def _wheels(lab: Lab) -> list[Path]:
    where = lab.settings.wheelhouse
    if not where:
        raise LabError("--wheelhouse: this lab has no wheelhouse",
                       id="bundle.no-wheelhouse",
                       fix="set wheelhouse: DIR in labctl.yaml (or LABCTL_WHEELHOUSE)")
    folder = lab.resolve_path(where)
    return sorted(p for p in folder.glob("*.whl") if p.is_file())


# --- load ------------------------------------------------------------------------------
@dataclass
class LoadResult:
    lab: Path
    images: list[tuple[str, str]]  # (spec, tag here)
    written: list[str]
    unchanged: list[str]
    data: list[str]
    engine_lines: list[str]
    seconds: float
    layers_sent: int = 0
    layers_here: int = 0  # in the bundle, and not sent: the engine had them

    def as_dict(self) -> dict[str, object]:
        return {"lab": str(self.lab), "images": dict(self.images), "written": self.written,
                "unchanged": self.unchanged, "data": self.data,
                "layers_sent": self.layers_sent, "layers_already_here": self.layers_here,
                "seconds": round(self.seconds, 1)}


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in fmt.chunks(f):
            h.update(chunk)
    return h.hexdigest()


class _Undo:
    """What a load did to the machine, undone in reverse when a later step fails (or is
    interrupted): the lab folder is either as it was or loaded whole."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], object]] = []

    def mkdirs(self, path: Path) -> None:
        missing = []
        while not path.exists() and not path.is_symlink():
            missing.append(path)
            path = path.parent
        for p in reversed(missing):
            p.mkdir()
            self.steps.append(p.rmdir)  # only while empty: never a learner's file

    def run(self) -> None:
        for step in reversed(self.steps):
            with contextlib.suppress(Exception):
                step()
        self.steps.clear()


def _inside(root: Path, path: Path) -> bool:
    real, top = path.resolve(), root.resolve()
    return real == top or top in real.parents


@dataclass
class _Plan:
    """What a load will write and tag, all checked before the first byte is written."""

    head: fmt.Head
    lab: Lab  # the target as it will be: its settings (tag prefix) and volumes
    files: dict[str, tuple[Path, int]]  # lab file -> (staged copy, mode)
    unchanged: set[str]
    wheels: list[tuple[Path, Path]]  # (staged, destination)
    data: list[tuple[str, catalogue.DataFile, Path, Path]]  # (entry, file, staged, root)
    tags: dict[str, str]  # spec -> its tag here
    hf: list[_HfPlace] = field(default_factory=list)


@dataclass(frozen=True)
class _HfPlace:
    """A Hugging Face snapshot's place in the target's hub cache: its blobs (staged),
    the snapshot's links to them, and the revision's ref."""

    snap: fmt.BundleHf
    folder: Path  # the repository's folder in the hub cache
    blobs: dict[str, Path]  # blob name -> staged file

    def link(self, rel: str) -> Path:
        return self.folder / "snapshots" / self.snap.commit / rel

    @property
    def ref(self) -> Path:
        return self.folder / "refs" / self.snap.revision

    def dests(self) -> list[Path]:
        return [self.folder / "blobs" / b for b in self.blobs] + \
            [self.link(r) for r in self.snap.files] + [self.ref]


def load(engine: Engine, bundle: Path, target: Path, *, progress: Progress | None = None
         ) -> LoadResult:
    """One read of the bundle. The head and the lab's files come first, each checked
    (the bundle is a classmate's file: untrusted) and staged beside the target; what
    would overwrite a learner's change, or could not be loaded, is refused before any
    image moves or any file is written. The images stream to the engine, but for the
    layers it has already (those are still read and hashed), with no tag: the engine
    would apply the bundle's own, any tag of the machine. The engine unpacks the whole
    stream before it loads an image, and the end of that stream is sent only once every
    checksum has matched, so a damaged bundle loads nothing. Then the files move in and
    this lab's tags are set, by the ids the engine reported; a failure on the way undoes
    what was done."""
    t0 = time.monotonic()
    size = bundle.stat().st_size
    # what the engine has (one inspect per image) is asked meanwhile
    chains = _worker.submit(engine.chains_present)
    undo = _Undo()
    stage: Path | None = None
    try:
        undo.mkdirs(target.parent)
        stage = _fresh(target)
        with bundle.open("rb") as f, fmt.reading():
            reader = fmt.Reader(f, _counter("loading", size, progress, lambda: f.tell()))
            members = reader.members()
            plan, first = _prepare(reader, members, target, stage)
            head = plan.head
            have = chains.result()
            _refuse_missing_layers(head, have)
            unsent = _layers_here(head, reader.index, have) \
                if engine.shares_layers_by_chain() else set()
            failure: list[LabError] = []
            sent: set[str] = set()
            ids: set[str] = set()
            try:
                lines = engine.load_images(_engine_stream(reader, first, members, unsent,
                                                          sent, ids, failure))
            except LabError as e:
                if failure:
                    raise failure[0] from None
                if unsent:
                    e.details.append(f"{len(unsent)} layer(s) were not sent: the engine had them"
                                     " when the load began (if an image was removed meanwhile,"
                                     " load again)")
                raise
            if failure:
                raise failure[0]
        _refuse_unloaded(head, ids, lines)
        written, placed = _commit(plan, target, stage, undo)
        tagged = _tag(engine, plan, undo)
    except BaseException:
        undo.run()
        raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)  # whatever happened
    layers = set(reader.manifest.layers if reader.manifest else {})
    return LoadResult(target, tagged, written, sorted(plan.unchanged), placed, lines,
                      time.monotonic() - t0, len(layers & sent), len(layers & unsent))


_worker = fmt.Worker("labctl-load")


def _fresh(target: Path) -> Path:
    """A new, private staging folder beside ``target`` (the same file system, so files
    move in by rename). Its name carries this process's id: the folders of killed loads
    of this user are removed, and a name another account made in a shared parent (/tmp)
    is never in the way."""
    prefix = f".{target.name}.labctl-staging-"
    for old in target.parent.glob(prefix + "*"):
        with contextlib.suppress(OSError, ValueError):
            st = old.lstat()
            pid = int(old.name.removeprefix(prefix).split("-", 1)[0])
            if st.st_uid == os.geteuid() and stat.S_ISDIR(st.st_mode) and not _alive(pid):
                shutil.rmtree(old)
    try:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=target.parent))
    except OSError as e:
        raise LabError(f"cannot make a staging folder in {target.parent}: {e.strerror or e}",
                       id="bundle.no-staging-folder",
                       fix="load into a folder whose parent you can write") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare(reader: fmt.Reader, members: Iterator[tuple[tarfile.TarInfo, Iterator[memoryview]]],
             target: Path, stage: Path
             ) -> tuple[_Plan, tuple[tarfile.TarInfo, Iterator[memoryview]] | None]:
    """The members before the images, staged (each checked by the Reader first), and
    the plan of what the load writes; the first docker member, not yet read."""
    head: fmt.Head | None = None
    files: dict[str, tuple[Path, int]] = {}
    staged: dict[str, Path] = {}
    first = None
    for info, data in members:
        if info.name == fmt.HEAD:
            head = reader.read_head(info, data)
        elif info.name.startswith("docker/"):
            first = (info, data)
            break
        elif info.name.startswith("lab/"):
            files[info.name[4:]] = (_stage(stage / "lab", info.name[4:], data), info.mode)
        else:  # data/ and wheelhouse/, as the head names them (Reader.members)
            staged[info.name] = _stage(stage / "files", info.name, data)
    if head is None:
        raise fmt.damaged("no head")
    want = fmt.files_named(head)
    have = {f"lab/{r}" for r in files} | set(staged)
    if want != have:
        raise fmt.damaged("its files are not the ones its head names (or come after its"
                          " images): " + ", ".join(sorted(want ^ have)[:5]))
    sha256 = {n: reader.seen[n].sha256 for n in staged}  # hashed as they streamed
    return _plan(target, stage, head, files, staged, sha256), first


def _stage(stage: Path, rel: str, data: Iterator[memoryview]) -> Path:
    path = stage / PurePosixPath(rel)  # a name the Reader checked: no .., no absolute
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in data:
            out.write(chunk)
    return path


def _bundle_error(e: LabError, rel: str) -> LabError:
    e.file = f"the bundle's {rel}"
    e.fix = "nothing was loaded; ask for a bundle saved from a lab that `labctl list` reads"
    return e


def _plan(target: Path, stage: Path, head: fmt.Head, files: dict[str, tuple[Path, int]],
          staged: dict[str, Path], sha256: dict[str, str]) -> _Plan:
    """Everything a load can check before it writes: the target a folder, no learner's
    change overwritten, volumes.yaml there and valid (host folders too), settings
    readable, each image's name a spec and its tag valid, every file inside the lab."""
    if target.exists() and not target.is_dir():
        raise LabError(f"{target} is a file, not a folder",
                       id="bundle.target-not-folder", fix="give --lab a folder")
    unchanged = _refuse_conflicts(target, head, files)
    lab = _target_lab(target, files, unchanged)
    tags = _image_tags(lab, target, stage, head, files)
    for rel in files:
        if rel not in unchanged and not _inside(target, target / rel):
            raise LabError(f"{target / rel} leads outside the lab folder (a link in it)",
                           id="bundle.link-outside",
                           fix="nothing was loaded; load into a new folder")
    wheels = [(staged[f"wheelhouse/{w}"], target / "wheelhouse" / w) for w in head.wheels]
    data = _data_places(lab, target, stage, head, files, staged)
    snaps = _hf_places(lab, target, head, staged, sha256)
    _refuse_blocked([target / r for r in files if r not in unchanged] + [d for _, d in wheels]
                    + [store.file_path(root, df) for _, df, _, root in data]
                    + [d for p in snaps for d in p.dests()])
    return _Plan(head, lab, files, unchanged, wheels, data, tags, snaps)


def _target_lab(target: Path, files: dict[str, tuple[Path, int]], unchanged: set[str]
                ) -> Lab:
    """The lab as the load leaves it: the bundle's volumes.yaml unless the target's is
    kept, this machine's settings if it has them. A problem in a file of the bundle's is
    named as the bundle's, so that the learner does not look for it in their folder."""
    if VOLUMES_FILE in files and VOLUMES_FILE not in unchanged:
        volumes: Path | None = files[VOLUMES_FILE][0]
    else:
        volumes = target / VOLUMES_FILE if (target / VOLUMES_FILE).is_file() else None
    if volumes is None:
        raise LabError(f"the bundle carries no {VOLUMES_FILE} and {target} has none",
                       id="bundle.no-volumes-file",
                       fix="nothing was loaded; save the lab again from its lab folder")
    try:
        vols = _read_model(volumes, VolumesFile, "volumes file")
        _check_volumes(target, vols)
    except LabError as e:
        if volumes != target / VOLUMES_FILE:
            _bundle_error(e, VOLUMES_FILE)
        raise
    settings_file = target / SETTINGS_FILE  # the machine's own settings always stay
    if not settings_file.is_file():
        settings_file = files.get(SETTINGS_FILE, (target / SETTINGS_FILE, 0))[0]
    try:
        settings = _from_env(_read_model(settings_file, LabSettings, "lab settings"),
                             dict(os.environ))
    except LabError as e:
        if settings_file != target / SETTINGS_FILE:
            _bundle_error(e, SETTINGS_FILE)
        raise
    lab = Lab(root=target, settings=settings, volumes=dict(vols.volumes))
    if volumes != target / VOLUMES_FILE:  # the bundle's own: its folders only in the lab
        _refuse_outside_volumes(lab, target, vols)
    return lab


def _refuse_outside_volumes(lab: Lab, target: Path, vols: VolumesFile) -> None:
    """A classmate's volumes.yaml may not mount a folder of this machine outside the
    lab: a lab run would mount it writable."""
    for name, vol in vols.volumes.items():
        if not _inside(target, lab.host_path(vol)):
            e = _bundle_error(LabError(
                f"volumes.{name}.host: {vol.host} is outside the lab folder {target}"
                " (a lab run would mount it, writable)", id="bundle.volume-outside"),
                VOLUMES_FILE)
            e.fix = (f"nothing was loaded; to share that folder with this lab, write"
                     f" {target / VOLUMES_FILE} yourself (as the bundle's) and load again")
            raise e


def _image_tags(lab: Lab, target: Path, stage: Path, head: fmt.Head,
                files: dict[str, tuple[Path, int]]) -> dict[str, str]:
    """Each image's tag here (spec -> tag): its spec there after the load, readable by
    this labctl (else the images would load and the lab then fail), its tag valid."""
    tags = {}
    for img in head.images:
        spec = f"images/{img.name}.yaml"
        if spec not in files and not (target / spec).is_file():
            raise _bundle_error(LabError(f"the image {img.name} has no spec {spec}",
                                         id="bundle.image-without-spec"), "head")
        if spec in files:  # a spec this labctl cannot read would load, and then fail
            try:
                load_spec(img.name, stage / "lab" / "images")
            except LabError as e:
                raise _bundle_error(e, spec) from None
        try:
            tags[img.name] = validators.image_ref(lab.image_tag(img.name))
        except ValueError as e:
            raise _bundle_error(LabError(f"the image {img.name}: {e}",
                                         id="bundle.invalid-image-tag"), "head") from None
    return tags


def _data_places(lab: Lab, target: Path, stage: Path, head: fmt.Head,
                 files: dict[str, tuple[Path, int]], staged: dict[str, Path]
                 ) -> list[tuple[str, catalogue.DataFile, Path, Path]]:
    """Where each data file goes, by the catalogue as the load leaves it: (entry, file,
    staged, volume root). One the catalogue lacks is not placed; one whose volume is
    outside the lab is refused (a bundle only fills the lab's own folders)."""
    cat_root = stage / "lab" if catalogue.LAB_FILE in files else target
    try:
        cat = catalogue.load(cat_root)
    except LabError as e:
        if cat_root != target:
            _bundle_error(e, catalogue.LAB_FILE)
        raise
    data = []
    for d in head.data:
        entry = cat.entries.get(d.entry)
        df = next((x for x in entry.files if x.name == d.file), None) if entry else None
        if entry is None or df is None:
            continue  # not in this lab's catalogue: nothing to put it in place of
        root = store.volume_root(lab, d.entry, entry)
        dest = store.file_path(root, df)
        if not _inside(target, dest):
            raise LabError(f"the data file {d.member} would be written to {dest}, outside"
                           f" the lab folder {target}",
                           id="bundle.data-outside",
                           fix="nothing was loaded; a bundle only fills the lab's own"
                               " folders: load it into a lab whose volumes are inside it,"
                               f" then copy the file (`labctl data get {d.entry}`)")
        data.append((d.entry, df, staged[d.member], root))
    return data


def _hf_places(lab: Lab, target: Path, head: fmt.Head, staged: dict[str, Path],
               sha256: dict[str, str]) -> list[_HfPlace]:
    """Where each Hugging Face snapshot goes: the hub cache of the lab as the load leaves
    it (HF_HOME's volume), which must be inside the lab folder, as every path below it.
    ``sha256``: each staged member's, as the Reader hashed it."""
    if not head.hf:
        return []
    try:
        cache = hf.hub_cache(lab)
    except LabError as e:
        e.fix = "nothing was loaded; " + (e.fix or "")
        raise
    places = []
    for h in head.hf:
        place = _HfPlace(h, cache / h.folder, {b: staged[h.member(b)] for b in h.files.values()})
        outside = next((d for d in [place.folder, *place.dests()] if not _inside(target, d)),
                       None)
        if outside is not None:
            raise LabError(f"{h.repo} would be written to {outside}, outside the lab folder"
                           f" {target}", id="bundle.data-outside",
                           fix="nothing was loaded; a bundle only fills the lab's own folders:"
                               " load it into a lab whose cache volume is inside it")
        # A link through a folder link of the learner's would point elsewhere than blobs/.
        linked = next((p for d in place.dests() for p in d.relative_to(place.folder).parents
                       if (place.folder / p).is_symlink()), None)
        if linked is not None:
            raise LabError(f"{place.folder / linked} is a link: {h.repo} is not written"
                           " through it", id="bundle.destination-blocked",
                           fix="nothing was loaded; move it aside and load again")
        for blob, staged_file in place.blobs.items():
            # A bundle cannot plant other content under a file's name. An LFS blob is named
            # by its SHA-256 (taken as it streamed: GBs are not read again), a small file by
            # git's SHA-1.
            got = sha256[h.member(blob)] if len(blob) == 64 else hf.blob_name(staged_file, 40)
            if got != blob:
                raise fmt.refused(f"the Hugging Face blob {h.member(blob)} is not the file its"
                                  " name is the hash of")
        places.append(place)
    return places


def _place_hf(place: _HfPlace, undo: _Undo) -> bool:
    """The blobs, the snapshot's links and the revision's ref, where none is there yet: a
    file the learner has stays as it is. True when anything was placed."""
    placed = False
    for blob, src in place.blobs.items():
        dest = place.folder / "blobs" / blob
        if not dest.exists() and not dest.is_symlink():
            undo.mkdirs(dest.parent)
            src.chmod(0o644)
            _move(src, dest)
            undo.steps.append(dest.unlink)
            placed = True
    for rel, blob in place.snap.files.items():
        link = place.link(rel)
        if not link.exists() and not link.is_symlink():
            undo.mkdirs(link.parent)
            link.symlink_to(os.path.relpath(place.folder / "blobs" / blob, link.parent))
            undo.steps.append(link.unlink)
            placed = True
    ref = place.ref
    if place.snap.revision != place.snap.commit and not ref.exists() and not ref.is_symlink():
        undo.mkdirs(ref.parent)
        ref.write_text(place.snap.commit, encoding="utf-8")
        undo.steps.append(ref.unlink)
        placed = True
    return placed


def _refuse_blocked(dests: list[Path]) -> None:
    """A destination that is a folder, or below a file, would fail halfway through the
    commit: refused while nothing is written."""
    for dest in dests:
        blocked = next((p for p in [dest, *dest.parents] if p.exists() and
                        (p.is_dir() if p == dest else not p.is_dir())), None)
        if blocked is not None:
            raise LabError(f"{dest} cannot be written: {blocked} is a"
                           f" {'folder' if blocked.is_dir() else 'file'}",
                           id="bundle.destination-blocked",
                           fix="nothing was loaded; move it aside and load again")


def _engine_stream(reader: fmt.Reader,
                   first: tuple[tarfile.TarInfo, Iterator[memoryview]] | None,
                   members: Iterator[tuple[tarfile.TarInfo, Iterator[memoryview]]],
                   unsent: set[str], sent: set[str], ids: set[str],
                   failure: list[LabError]) -> Iterator[bytes | memoryview]:
    """The images as the engine's tar stream: no tag in it (fmt.untagged; ``ids``: the
    images its manifest names), the layers in ``unsent`` left out, and its end only
    once every checksum matched (else a refusal the engine fails on, the error in
    ``failure``)."""
    try:
        with fmt.reading():  # a broken member here is the bundle's, not the engine's
            yield from _docker_members(reader, first, members, unsent, sent, ids)
    except LabError as e:
        failure.append(e)
        yield fmt.REFUSE
        return
    yield fmt.END


def _docker_members(reader: fmt.Reader,
                    first: tuple[tarfile.TarInfo, Iterator[memoryview]] | None,
                    members: Iterator[tuple[tarfile.TarInfo, Iterator[memoryview]]],
                    unsent: set[str], sent: set[str], ids: set[str]
                    ) -> Iterator[bytes | memoryview]:
    for info, data in itertools.chain([first] if first else [], members):
        member = info.name[len("docker/"):]
        if not info.name.startswith("docker/"):
            raise fmt.damaged(f"{info.name} among the images")
        if member in fmt.ENGINE_DOCS and info.isreg():
            if info.size > fmt.ENGINE_DOC_LIMIT:
                raise fmt.damaged(f"{info.name} of {info.size} bytes")
            # hashed as the bundle has it (the Reader); the engine gets it untagged
            body, named = fmt.untagged(member, b"".join(data))
            ids.update(named)
            sent.add(member)
            yield fmt.docker_doc(info, body)
        elif member not in unsent:  # else it passes unsent, still read and hashed
            sent.add(member)
            yield from fmt.docker_member(info, data)
    reader.check()


def _refuse_unloaded(head: fmt.Head, ids: set[str], lines: list[str]) -> None:
    """Each image the head names must be one the bundle's manifest names and the engine
    reported loading: only such an id is tagged."""
    loaded = {line.split(":", 1)[1].strip() for line in lines
              if line.startswith("Loaded image ID:")}
    for img in head.images:
        if img.id not in ids or img.id not in loaded:
            raise LabError(f"the bundle's head names the image {img.id} for {img.name}, which"
                           " " + ("its images do not hold" if img.id not in ids else
                                  "the engine did not report loading"),
                           id="bundle.image-not-loaded",
                           fix="nothing was tagged or written; ask for the bundle again"
                               " (`labctl save`)", details=lines[-3:])


def _move(src: Path, dest: Path) -> None:
    try:
        os.replace(src, dest)
    except OSError:  # another file system (the target is a mount point)
        shutil.move(src, dest)


def _commit(plan: _Plan, target: Path, stage: Path, undo: _Undo) -> tuple[list[str], list[str]]:
    """The staged files into the lab folder, each renamed in (a file replaced is kept
    aside until the load is done), then wheels and data; all recorded in ``undo``."""
    undo.mkdirs(target)
    written = []
    for rel, (src, mode) in plan.files.items():
        if rel in plan.unchanged:
            continue
        dest = target / rel
        undo.mkdirs(dest.parent)
        if dest.exists() or dest.is_symlink():  # unchanged since the earlier bundle
            aside = stage / "aside" / rel
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(dest, aside)
            undo.steps.append(lambda a=aside, d=dest: _move(a, d))
        src.chmod(mode & 0o755 | 0o644)
        _move(src, dest)
        undo.steps.append(dest.unlink)
        written.append(rel)
    for src, dest in plan.wheels:  # a wheel already there stays
        if not dest.exists():
            undo.mkdirs(dest.parent)
            _move(src, dest)
            undo.steps.append(dest.unlink)
    placed = []
    for entry, df, src, root in plan.data:
        dest = store.file_path(root, df)
        if not dest.exists():  # the learner's file stays as it is
            undo.mkdirs(dest.parent)
            store.place(root, entry, df, src, move=True)
            undo.steps.append(dest.unlink)
            placed.append(entry)
    placed += [p.snap.repo for p in plan.hf if _place_hf(p, undo)]
    return written, sorted(set(placed))


def _tag(engine: Engine, plan: _Plan, undo: _Undo) -> list[tuple[str, str]]:
    """This lab's tags, on the ids checked: a tag it had before comes back on failure."""
    tagged = []
    for img in plan.head.images:
        here = plan.tags[img.name]
        old = engine.image(here)
        engine.tag(img.id, here)
        undo.steps.append(lambda h=here, o=old: _untag(engine, h, o.id if o else None))
        tagged.append((img.name, here))
    return tagged


def _untag(engine: Engine, tag: str, old: str | None) -> None:
    if old:
        engine.tag(old, tag)
    else:
        engine.api.remove_image(tag, noprune=True)


def _refuse_conflicts(target: Path, head: fmt.Head, files: dict[str, tuple[Path, int]]
                      ) -> set[str]:
    """The lab files already there as the bundle has them; LabError when one the learner
    changed would be replaced. This machine's own labctl.yaml always stays."""
    conflicts, unchanged = [], set()
    for rel, (staged, _) in files.items():
        dest = target / rel
        if not (dest.is_file() or dest.is_symlink()):
            continue
        have = _sha(dest) if dest.is_file() and not dest.is_symlink() else None
        if rel == SETTINGS_FILE or have == _sha(staged):
            unchanged.add(rel)
        elif have is None or have != head.replaces.get(rel):
            conflicts.append(rel)
    if conflicts:
        raise LabError(f"{len(conflicts)} file(s) of the lab folder {target} differ from the"
                       " bundle's: " + ", ".join(sorted(conflicts)[:8])
                       + (" ..." if len(conflicts) > 8 else ""),
                       id="bundle.lab-files-differ",
                       fix="nothing was loaded; load into a new folder (`labctl load FILE"
                           " --lab NEWDIR`), or move those files aside and load again")
    return unchanged


def _layers_here(head: fmt.Head, index: dict[str, str] | None, have: set[str]) -> set[str]:
    """The layer members the engine need not be sent: no image of the bundle lacks that
    layer here, below the same layers (the engine then never opens its file)."""
    needed = {d for img in head.images
              for d in img.diff_ids[leading_present(img.diff_ids, have):]}
    return {m for m, d in (index or {}).items() if d not in needed}


def _refuse_missing_layers(head: fmt.Head, have: set[str]) -> None:
    left_out = set(head.since_chains)
    for img in head.images:
        needed = [i for i, c in enumerate(chain_ids(img.diff_ids)) if c in left_out]
        if needed and leading_present(img.diff_ids, have) <= max(needed):
            raise LabError(f"the bundle leaves out layers of {img.name} that this engine does"
                           " not have (it was saved with --since an earlier bundle)",
                           id="bundle.missing-layers",
                           fix="nothing was loaded; load the earlier bundle first, or save a"
                               " full one (without --since)")
