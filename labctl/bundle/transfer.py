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
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from labctl import __version__, labels
from labctl.bundle import format as fmt
from labctl.config.lab import SETTINGS_FILE, VOLUMES_FILE, Lab, load_lab
from labctl.data import catalogue, store
from labctl.engine import Engine, chain_ids, leading_present
from labctl.errors import LabError

Progress = Callable[[str, int, int | None], None]  # (what, bytes done, bytes in all)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")


def strip_credentials(text: str) -> str:
    """Every URL's user:password@ removed, comments and layout kept."""
    return _USERINFO.sub(r"\1", text)


def lab_files(lab: Lab) -> list[str]:
    """What of the lab folder travels: specs, locks, checks and prepare scripts, the
    volumes, settings and the lab's own catalogue. Never .labctl/ (tokens) or volumes."""
    root = lab.root
    out = [p.relative_to(root).as_posix() for p in sorted(lab.images_dir.rglob("*"))
           if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")]
    out += [n for n in (VOLUMES_FILE, SETTINGS_FILE, catalogue.LAB_FILE) if (root / n).is_file()]
    return out


@dataclass
class SaveResult:
    path: Path
    size: int
    images: list[fmt.BundleImage]
    layers: int
    omitted: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


def read_manifest(path: Path, progress: Progress | None = None) -> fmt.Manifest:
    """A bundle's manifest, verified; or a manifest JSON (`labctl load --list --json`)."""
    if path.suffix == ".json":
        try:
            return fmt.Manifest.model_validate_json(path.read_bytes())
        except ValueError as e:
            raise LabError(f"{path}: not a labctl bundle manifest ({str(e).splitlines()[0]})",
                           fix="give the bundle itself, or `labctl load --list FILE --json`"
                               " output") from e
    if not path.is_file():
        raise LabError(f"{path}: no such file", fix="give the path of a labctl save bundle")
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
                               fix=f"labctl build {name}")
        entries = _data_files(lab, data or [])
        wheels = _wheels(lab) if wheelhouse else []
        if isinstance(since, Path):
            since = read_manifest(since, progress)
        return _save(engine, lab, found, stream, out, since=since, entries=entries,
                     wheels=wheels, progress=progress, t0=t0)
    finally:
        stream.close()


def _save(engine: Engine, lab: Lab, found: dict[str, Any], stream: Iterator[bytes],
          out: Path, *, since: fmt.Manifest | None,
          entries: list[tuple[str, catalogue.DataFile, Path]], wheels: list[Path],
          progress: Progress | None, t0: float) -> SaveResult:
    from labctl.image.render import render

    images, warnings = [], []
    for name, img in found.items():  # each image as inspected once, by save()
        tag = lab.image_tag(name)
        if (img.labels or {}).get(labels.HASH) != render(lab, lab.spec(name)).digest:
            warnings.append(f"{name}: the image is older than its spec; it travels as it is"
                            f" (run `labctl build {name}` first to carry the new one)")
        images.append(fmt.BundleImage(
            name=name, tag=tag, id=img.id, hash=(img.labels or {}).get(labels.HASH),
            diff_ids=list(img.attrs["RootFS"]["Layers"]), size=int(img.attrs["Size"])))
    diff_ids = {d for i in images for d in i.diff_ids}
    skip = dict(since.layers) | dict(since.omitted) if since else {}  # what the target has
    total = engine.unique_size({i.id: i.size for i in images}) + \
        sum(p.stat().st_size for _, _, p in entries) + sum(p.stat().st_size for p in wheels)
    note = _counter("saving", total, progress)
    rels = lab_files(lab)
    head = fmt.Head(
        labctl=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        images=images, lab_files=rels,
        data=[fmt.BundleData(entry=e, file=f.name, member=f"data/{e}/{f.name}")
              for e, f, _ in entries],
        wheels=[p.name for p in wheels],
        replaces={r: since.members[f"lab/{r}"].sha256 for r in since.lab_files} if since else {},
        since_chains=sorted({c for i in since.images for c in chain_ids(i.diff_ids)})
        if since else [])
    part = out.with_name(f".{out.name}.partial")
    layers: dict[str, str] = {}
    omitted: dict[str, str] = {}
    docs: dict[str, bytes] = {}
    try:
        with part.open("wb") as sink:
            w = fmt.Writer(sink, on_bytes=note)
            w.head(head)
            for rel in rels:
                text = (lab.root / rel).read_bytes()
                if rel == SETTINGS_FILE:
                    text = strip_credentials(text.decode("utf-8")).encode("utf-8")
                mode = 0o755 if os.access(lab.root / rel, os.X_OK) else 0o644
                w.add_bytes(f"lab/{rel}", text, mode=mode)
            for d, (_, _, path) in zip(head.data, entries, strict=True):
                with path.open("rb") as src:
                    w.add(d.member, fmt.chunks(src), path.stat().st_size)
            for p in wheels:
                with p.open("rb") as src:
                    w.add(f"wheelhouse/{p.name}", fmt.chunks(src), p.stat().st_size)
            for info, data in fmt.walk(stream):
                _save_member(w, info, data, diff_ids, skip, layers, omitted, docs, note)
            known = fmt.layer_diff_ids(docs)
            for member in layers:
                layers[member] = known.get(member, "")
                if layers[member]:
                    w.settle(f"docker/{member}", layers[member].removeprefix("sha256:"))
            w.close(head, layers, omitted)
        os.replace(part, out)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return SaveResult(out, out.stat().st_size, images, len(layers), len(omitted),
                      time.monotonic() - t0, warnings)


DOC_LIMIT = 1 << 20  # a larger member that is no layer is streamed (its JSON files are KBs)


def _save_member(w: fmt.Writer, info: tarfile.TarInfo, data: Iterator[memoryview],
                 diff_ids: set[str], skip: dict[str, str], layers: dict[str, str],
                 omitted: dict[str, str], docs: dict[str, bytes],
                 note: Callable[[int], None]) -> None:
    name = f"docker/{info.name}"
    if info.isdir():
        w.add_dir(name)
    elif info.issym():
        w.add_link(name, info.linkname)
    elif not info.isfile():
        raise LabError(f"the engine's save holds {info.name}, which is neither a file, a"
                       " folder nor a link", fix="report this with `labctl doctor --json`")
    elif fmt.is_layer(info.name, diff_ids):
        if info.name in skip:  # the target has it: an earlier bundle held it
            omitted[info.name] = skip[info.name]
            note(info.size)
            return
        # its checksum is its diff id, settled from the save's manifest at the end
        w.add(name, data, info.size, mode=info.mode, hashed=False)
        layers[info.name] = ""
    else:
        if info.size > DOC_LIMIT:  # not one of the save's own files: streamed, hashed
            w.add(name, data, info.size, mode=info.mode)
            return
        text = b"".join(data)
        w.add_bytes(name, text, mode=info.mode)
        if text[:1] in (b"{", b"["):  # manifest.json, image configs: read at the end
            docs[info.name] = text


def _data_files(lab: Lab, names: list[str]) -> list[tuple[str, catalogue.DataFile, Path]]:
    cat = catalogue.load(lab.root)
    out = []
    for name in names:
        entry = cat.entries.get(name)
        if entry is None:
            raise LabError(f"--with-data {name}: no such catalogue entry",
                           fix="`labctl data list` shows the names")
        root = store.volume_root(lab, name, entry)
        for f in entry.files:
            st = store.state(root, name, f, verify=True)
            if not st.present:
                raise LabError(f"--with-data {name}: {f.name} is not in {lab.rel(st.path)}"
                               + (f" ({st.problem})" if st.problem else ""),
                               fix=f"labctl data get {name}")
            out.append((name, f, st.path))
    return out


def _wheels(lab: Lab) -> list[Path]:
    where = lab.settings.wheelhouse
    if not where:
        raise LabError("--wheelhouse: this lab has no wheelhouse",
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


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in fmt.chunks(f):
            h.update(chunk)
    return h.hexdigest()


def _target(root: Path, rel: str) -> Path:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        raise fmt.damaged(f"a member would be written outside the lab folder: {rel}")
    return root / p


def load(engine: Engine, bundle: Path, target: Path, *, progress: Progress | None = None
         ) -> LoadResult:
    """One read of the bundle. The head and the lab's files come first: what would
    overwrite a learner's change is refused before any image moves. The images stream to
    the engine, but for the layers it has already (those are still read and hashed). The
    engine unpacks the whole stream before it loads an image, and the end of that stream
    is sent only once every checksum has matched, so a damaged bundle loads nothing. The
    files are held (small ones in memory, data and wheels in a staging folder) and put in
    place after that."""
    t0 = time.monotonic()
    size = bundle.stat().st_size
    stage = target.parent / f".{target.name}.labctl-staging"  # beside it: same file system
    # what the engine has (one inspect per image) is asked meanwhile
    chains = _pool.submit(engine.chains_present)
    try:
        with bundle.open("rb") as f, fmt.reading():
            reader = fmt.Reader(f, _counter("loading", size, progress, lambda: f.tell()))
            members = reader.members()
            files: dict[str, tuple[bytes, int]] = {}
            staged: dict[str, Path] = {}
            first_docker = None
            for info, data in members:
                if info.name == fmt.HEAD:
                    head = reader.read_head(info, data)
                elif info.name.startswith("lab/"):
                    _target(target, info.name[4:])
                    files[info.name[4:]] = (b"".join(data), info.mode)
                elif info.name.startswith(("data/", "wheelhouse/")) and info.isfile():
                    staged[info.name] = _stage(stage, info.name, data)
                elif info.name.startswith("docker/"):
                    first_docker = (info, data)
                    break
            unchanged = _refuse_conflicts(target, head, files)
            have = chains.result()
            _refuse_missing_layers(head, have)
            unsent = _layers_here(head, reader.index, have) \
                if engine.shares_layers_by_chain() else set()
            failure: list[LabError] = []
            sent: set[str] = set()

            def images() -> Iterator[bytes | memoryview]:
                try:
                    for info, data in itertools.chain([first_docker] if first_docker else [],
                                                      members):
                        member = info.name[len("docker/"):]
                        if not info.name.startswith("docker/") or not member:
                            if info.isfile():
                                raise fmt.damaged(f"{info.name} among the images")
                        elif member not in unsent:  # else it passes unsent, still read and hashed
                            sent.add(member)
                            yield from fmt.docker_member(info, data)
                    reader.check()
                except LabError as e:
                    failure.append(e)
                    yield fmt.REFUSE
                    return
                yield fmt.END

            try:
                lines = engine.load_images(images())
            except LabError as e:
                if failure:
                    raise failure[0] from None
                if unsent:
                    e.details.append(f"{len(unsent)} layer(s) were not sent: the engine had them"
                                     " when the load began (if an image was removed meanwhile,"
                                     " load again)")
                raise
        written = _write_files(target, files, unchanged)
        lab = load_lab(str(target))
        placed = _place(lab, target, head, staged)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # whatever happened
    tagged = []
    for img in head.images:
        here = lab.image_tag(img.name)
        if here != img.tag:
            engine.tag(img.id, here)
        tagged.append((img.name, here))
    layers = set(reader.manifest.layers if reader.manifest else {})
    return LoadResult(target, tagged, written, sorted(unchanged), placed, lines,
                      time.monotonic() - t0, len(layers & sent), len(layers & unsent))


_pool = ThreadPoolExecutor(1, thread_name_prefix="labctl-load")


def _stage(stage: Path, member: str, data: Iterator[memoryview]) -> Path:
    path = stage / member
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for chunk in data:
            out.write(chunk)
    return path


def _refuse_conflicts(target: Path, head: fmt.Head, files: dict[str, tuple[bytes, int]]
                      ) -> set[str]:
    """The lab files already there as the bundle has them; LabError when one the learner
    changed would be replaced. This machine's own labctl.yaml always stays."""
    conflicts, unchanged = [], set()
    for rel, (content, _) in files.items():
        dest = target / rel
        if not (dest.is_file() or dest.is_symlink()):
            continue
        have = _sha(dest) if dest.is_file() and not dest.is_symlink() else None
        if rel == SETTINGS_FILE or have == hashlib.sha256(content).hexdigest():
            unchanged.add(rel)
        elif have is None or have != head.replaces.get(rel):
            conflicts.append(rel)
    if conflicts:
        raise LabError(f"{len(conflicts)} file(s) of the lab folder {target} differ from the"
                       " bundle's: " + ", ".join(sorted(conflicts)[:8])
                       + (" ..." if len(conflicts) > 8 else ""),
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
                           fix="nothing was loaded; load the earlier bundle first, or save a"
                               " full one (without --since)")


def _write_files(target: Path, files: dict[str, tuple[bytes, int]], unchanged: set[str]
                 ) -> list[str]:
    written = []
    for rel, (content, mode) in files.items():
        if rel in unchanged:
            continue
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.labctl-tmp")
        tmp.write_bytes(content)
        tmp.chmod(mode & 0o755 | 0o644)
        os.replace(tmp, dest)
        written.append(rel)
    return written


def _place(lab: Lab, target: Path, head: fmt.Head, staged: dict[str, Path]) -> list[str]:
    """Wheels into the lab's wheelhouse/ (kept where one is there), datasets where their
    library looks, each verified by its library's checks; a file already there stays."""
    for member, path in staged.items():
        if member.startswith("wheelhouse/"):
            dest = _target(target / "wheelhouse", member[len("wheelhouse/"):])
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.replace(path, dest)
    cat = catalogue.load(lab.root) if head.data else None
    placed = []
    for d in head.data:
        entry = cat.entries.get(d.entry) if cat else None
        if entry is None or d.member not in staged:
            continue
        df = next(x for x in entry.files if x.name == d.file)
        root = store.volume_root(lab, d.entry, entry)
        if not store.file_path(root, df).exists():  # the learner's file stays as it is
            store.place(root, d.entry, df, staged[d.member], move=True)
            placed.append(d.entry)
    return sorted(set(placed))
