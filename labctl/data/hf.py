"""Hugging Face repositories in the lab's shared cache: `labctl data get hf:ORG/NAME[@REV]`.

The files go where every lab and tool looks for them: the hub cache under the volume whose
variables set HF_HOME (the shipped cache/huggingface/), laid out by huggingface_hub's own
snapshot machinery (blobs/, snapshots/, refs/), so transformers, diffusers and
`huggingface-cli` in any lab find them, also offline (HF_HUB_OFFLINE=1). The download is
huggingface_hub's: resumable (a `.incomplete` blob continues with a Range request), from
the lab's mirror (`network.hf_endpoint`, HF_ENDPOINT) first. The learner's token (their
`huggingface-cli login`, or HF_TOKEN) is huggingface_hub's business: labctl never reads,
prints or stores it, and sends it to the Hub only, never to a mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from labctl.config.lab import Lab
from labctl.data.hfref import BLOB, COMMIT, PREFIX, SHA256, HfRef, is_ref, parse_ref
from labctl.errors import LabError

HUB = "https://huggingface.co"
TRIES = 3  # tries of one download from one endpoint; each resumes the last one's blobs


def hub_cache(lab: Lab) -> Path:
    """The host folder of the labs' hub cache: HF_HOME's hub/ inside the volume that sets
    HF_HOME (HF_HUB_CACHE when a volume sets that instead)."""
    for var, below in (("HF_HUB_CACHE", ()), ("HF_HOME", ("hub",))):
        for vol in lab.volumes.values():
            value = vol.env.get(var)
            if not value:
                continue
            inner, top = PurePosixPath(value), PurePosixPath(vol.container)
            if (inner != top and top not in inner.parents) or ".." in inner.parts:
                continue  # not below the volume's folder (a bundle's volumes.yaml may say)
            return lab.host_path(vol).joinpath(*inner.relative_to(top).parts, *below)
    raise LabError("no volume of this lab sets HF_HOME: labctl does not know where the labs"
                   " look for Hugging Face models", id="hf.no-hf-home", file="volumes.yaml",
                   fix="add HF_HOME: /cache/huggingface to the cache volume's env (the"
                   " shipped volumes.yaml has it)")


def endpoints(lab: Lab) -> list[str]:
    """Where to look, in order: the lab's mirror, then the Hub."""
    mirror = lab.settings.network.hf_endpoint
    return list(dict.fromkeys([u.rstrip("/") for u in (mirror, HUB) if u]))


def _session_factory(lab: Lab) -> Callable[[], Any]:
    from labctl.data import fetch

    return lambda: fetch.session(lab)  # the lab's proxies and CA, as every labctl download


@dataclass
class Result:
    ref: HfRef
    endpoint: str
    commit: str
    folder: Path  # the snapshot folder
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    total_files: int = 0  # in the repository at that revision

    def as_dict(self) -> dict[str, object]:
        return {"name": self.ref.name, "commit": self.commit, "endpoint": self.endpoint,
                "path": str(self.folder), "files": self.files, "bytes": self.bytes}


def _info(api: Any, ref: HfRef, token: bool | None) -> Any:
    return api.repo_info(ref.repo_id, repo_type=ref.repo_type, revision=ref.revision,
                         files_metadata=True, token=token)


def _wanted(info: Any, include: list[str]) -> list[Any]:
    from huggingface_hub.utils import filter_repo_objects

    siblings = list(info.siblings or [])
    names = set(filter_repo_objects([s.rfilename for s in siblings],
                                    allow_patterns=include or None))
    return [s for s in siblings if s.rfilename in names]


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _missing(e: BaseException) -> bool:
    """The endpoint does not have it (or wants a login): worth asking the next one."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, RepositoryNotFoundError | RevisionNotFoundError | EntryNotFoundError
                  | GatedRepoError):
        return True
    response = getattr(e, "response", None)
    return isinstance(e, HfHubHTTPError) and response is not None and response.status_code in (
        401, 403, 404)


def _verify(folder: Path, wanted: list[Any]) -> None:
    """Each file the sizes and (for LFS files) the sha256 the repository lists: a mirror
    is not trusted to send what it names. A bad blob is removed (fetched again next time)."""
    for s in wanted:
        path = folder / s.rfilename
        if not path.is_file():
            raise LabError(f"{s.rfilename} is missing from {folder} after the download",
                           id="hf.file-missing",
                           fix="run the same command again")
        size = path.stat().st_size
        lfs = getattr(s, "lfs", None)
        want_size = s.size if s.size is not None else (lfs.size if lfs else None)
        want_sha = lfs.sha256 if lfs is not None and SHA256.fullmatch(lfs.sha256 or "") else None
        problem = None
        if want_size is not None and size != want_size:
            problem = f"{size} bytes, the repository lists {want_size}"
        elif want_sha is not None and (got := blob_name(path)) != want_sha:
            problem = f"sha256 {got[:12]}..., the repository lists {want_sha[:12]}..."
        if problem:
            blob = path.resolve()
            blob.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            raise LabError(f"{s.rfilename}: {problem}; removed it", id="hf.checksum-mismatch",
                           fix="run the same command again (set network.hf_endpoint to a"
                           " mirror you trust if it happens again)")


def _fetch(ref: HfRef, commit: str, cache: Path, endpoint: str, token: bool | None,
           wanted: list[Any], say: Callable[[str], None]) -> str | BaseException:
    """The snapshot folder of ``wanted`` from one endpoint, or the last failure: an
    interrupted download is tried again (TRIES in all, each resuming the last one's blobs);
    a file the endpoint does not have is not, since another try cannot change that."""
    from huggingface_hub import snapshot_download

    last: BaseException | None = None
    for attempt in range(1, TRIES + 1):
        try:
            got = snapshot_download(
                ref.repo_id, repo_type=ref.repo_type, revision=commit, cache_dir=cache,
                endpoint=endpoint, token=token, allow_patterns=[s.rfilename for s in wanted])
            # Unreachable, huggingface_hub returns what the cache holds: complete?
            lacking = [s.rfilename for s in wanted if not (Path(got) / s.rfilename).exists()]
            if not lacking:
                return got
            last = OSError(f"{endpoint} stopped answering; {lacking[0]} is not complete")
        except Exception as e:  # noqa: BLE001
            last = e
            if _missing(e):
                break
        if attempt < TRIES:
            say(f"  interrupted ({_why(last)}); resuming (try {attempt + 1} of {TRIES})")
    assert last is not None
    return last


def download(lab: Lab, ref: HfRef, include: list[str], *, say: Callable[[str], None],
             progress: bool = True) -> Result:
    """Fetch ``ref`` (the files matching ``include``) into the lab's hub cache."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise LabError("HF_HUB_OFFLINE is set in this shell: nothing can be downloaded",
                       id="hf.offline",
                       fix="unset HF_HUB_OFFLINE for `labctl data get` (labs started with it"
                       " find what the cache holds)")
    import huggingface_hub
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    cache = hub_cache(lab)
    cache.mkdir(parents=True, exist_ok=True)
    huggingface_hub.configure_http_backend(backend_factory=_session_factory(lab))
    (enable_progress_bars if progress else disable_progress_bars)()
    problems: list[str] = []
    for endpoint in endpoints(lab):
        # The learner's token goes to the Hub only (None: huggingface_hub finds their
        # login or HF_TOKEN); a mirror gets no credentials.
        token: bool | None = None if endpoint == HUB else False
        api = HfApi(endpoint=endpoint, token=token)
        try:
            info = _info(api, ref, token)
        except Exception as e:  # noqa: BLE001 - any failure: say it, try the next endpoint
            problems.append(f"{endpoint}: {_why(e)}")
            continue
        commit = str(info.sha or "")
        if not COMMIT.fullmatch(commit):
            problems.append(f"{endpoint}: answered the commit {commit[:60]!r}, not a commit id")
            continue
        wanted = _wanted(info, include)
        if not wanted:
            raise LabError(f"{ref.name} has no file matching {' '.join(include)}"
                           f" (at {commit[:12]}, {endpoint})", id="hf.no-matching-files",
                           fix="drop --include, or name a pattern such as '*.safetensors'")
        size = sum(s.size or 0 for s in wanted)
        say(f"{ref.name} (commit {commit[:12]}, {endpoint}): {len(wanted)} of"
            f" {len(info.siblings or [])} files, {_human(size)} -> {lab.rel(cache)}")
        folder = _fetch(ref, commit, cache, endpoint, token, wanted, say)
        if isinstance(folder, BaseException):
            if _missing(folder):  # not there: the next endpoint may have it
                problems.append(f"{endpoint}: {_why(folder)}")
                continue
            kept = sum(p.stat().st_size for p in (cache / ref.folder).rglob("*.incomplete"))
            raise LabError(f"{ref.name}: the download from {endpoint} was interrupted"
                           f" {TRIES} times: {_why(folder)}", id="hf.download-interrupted",
                           details=[f"{_human(kept)} kept in {lab.rel(cache / ref.folder)}"],
                           fix="run the same command again: it resumes where it stopped")
        _write_ref(cache / ref.folder, ref.revision, commit)
        _verify(Path(folder), wanted)
        return Result(ref, endpoint, commit, Path(folder), [s.rfilename for s in wanted],
                      size, len(info.siblings or []))
    raise LabError(f"{ref.name}: no endpoint has it", id="hf.repo-not-found", details=problems,
                   fix="check the name and revision (huggingface.co/ORG/NAME); a gated or"
                   " private model needs `huggingface-cli login` (its token goes to the Hub"
                   " only); set network.hf_endpoint in labctl.yaml for a mirror")


def download_all(lab: Lab, names: list[str], include: list[str], *,
                 say: Callable[[str], None], progress: bool = True) -> list[Result]:
    """`data get hf:...`: the repositories among ``names``, every name checked before
    the first download."""
    refs = [parse_ref(n) for n in names if is_ref(n)]
    return [download(lab, r, include, say=say, progress=progress) for r in refs]


def _write_ref(repo_folder: Path, revision: str, commit: str) -> None:
    """refs/REVISION -> commit, so an offline from_pretrained(revision=...) finds it
    (snapshot_download was given the commit, so it wrote none)."""
    if revision == commit:
        return
    path = repo_folder / "refs" / revision
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(commit, encoding="utf-8")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


@dataclass(frozen=True)
class Cached:
    name: str  # hf:ORG/NAME or hf:datasets/ORG/NAME
    size: int
    files: int
    revisions: list[str]  # refs (main, tags) or commit prefixes
    path: Path


def cached(lab: Lab) -> Iterator[Cached]:
    """The repositories in the lab's hub cache (what any lab or tool downloaded)."""
    try:
        cache = hub_cache(lab)
    except LabError:
        return
    if not cache.is_dir():
        return
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache)
    except (CacheNotFound, OSError):
        return
    for repo in sorted(info.repos, key=lambda r: (r.repo_type, r.repo_id)):
        if repo.repo_type not in ("model", "dataset"):
            continue
        kind = "datasets/" if repo.repo_type == "dataset" else ""
        refs = sorted({r for rev in repo.revisions for r in rev.refs}
                      or {rev.commit_hash[:12] for rev in repo.revisions})
        yield Cached(f"{PREFIX}{kind}{repo.repo_id}", repo.size_on_disk, repo.nb_files, refs,
                     Path(repo.repo_path))


# --- a model's small files, for `labctl doctor --model` (labctl.gpu.model_memory) ------------
MODEL_FILES = ("config.json", "model.safetensors.index.json")
META_TIMEOUT = (10.0, 20.0)  # connect, read: seconds
META_LIMIT = 50 << 20  # an index of a very large model is a few MB


def _snapshot_dir(folder: Path, revision: str) -> tuple[str, Path]:
    """The commit a revision names in a repository's cache folder (refs/REVISION, or the
    revision itself) and that commit's snapshot folder; the caller checks the commit."""
    refs = folder / "refs" / revision
    commit = refs.read_text(encoding="utf-8").strip() if refs.is_file() else revision
    return commit, folder / "snapshots" / commit


def _cached_files(hub: Path, ref: HfRef) -> dict[str, Any] | None:
    """config.json and the index from a snapshot already in the shared cache."""
    commit, snap = _snapshot_dir(hub / ref.folder, ref.revision)
    if not COMMIT.fullmatch(commit) or not (snap / "config.json").is_file():
        return None
    out: dict[str, Any] = {}
    for name in MODEL_FILES:
        if (snap / name).is_file():
            out[name] = json.loads((snap / name).read_text(encoding="utf-8"))
    if "model.safetensors.index.json" not in out and (snap / "model.safetensors").exists():
        out["model.safetensors"] = (snap / "model.safetensors").stat().st_size
    return out


def model_files(lab: Lab, repo: str) -> tuple[HfRef, dict[str, Any]]:
    """A model's config.json and safetensors index (or its single model.safetensors'
    size): from the lab's HF cache, else read from the mirror (then the Hub). Kilobytes,
    never the weights; one quick try per endpoint (a doctor must not wait minutes)."""
    from urllib.parse import quote

    from huggingface_hub.utils import build_hf_headers

    ref = parse_ref(repo if is_ref(repo) else PREFIX + repo)
    files = _cached_files(hub_cache(lab), ref)
    if files is not None:
        return ref, files
    session = _session_factory(lab)()
    problems = []
    for endpoint in endpoints(lab):
        # The learner's token (their login, HF_TOKEN) to the Hub only: gated models.
        headers = build_hf_headers(token=None if endpoint == HUB else False)
        kind = "datasets/" if ref.repo_type == "dataset" else ""
        base = f"{endpoint}/{kind}{ref.repo_id}/resolve/{quote(ref.revision, safe='')}"
        out: dict[str, Any] = {}
        try:
            for name in MODEL_FILES:
                r = session.get(f"{base}/{name}", headers=headers, timeout=META_TIMEOUT)
                if r.status_code == 404:
                    continue
                r.raise_for_status()
                if len(r.content) > META_LIMIT:
                    raise ValueError(f"{name} is over {META_LIMIT} bytes: not a config")
                out[name] = r.json()
            if "config.json" not in out:
                problems.append(f"{endpoint}: {ref.repo_id} has no config.json there")
                continue
            if "model.safetensors.index.json" not in out:
                r = session.head(f"{base}/model.safetensors", headers=headers,
                                 timeout=META_TIMEOUT, allow_redirects=False)
                size = r.headers.get("X-Linked-Size") or r.headers.get("Content-Length")
                if r.status_code < 400 and size and size.isdigit():
                    out["model.safetensors"] = int(size)
        except Exception as e:  # noqa: BLE001 - say it, try the next endpoint
            status = getattr(getattr(e, "response", None), "status_code", None)
            why = ("gated or private: `huggingface-cli login` (and accept the model's terms"
                   " on its page)" if status in (401, 403) else _why(e))
            problems.append(f"{endpoint}: {why}")
            continue
        return ref, out
    raise LabError(f"{ref.repo_id}: its config.json could not be read",
                   id="hf.config-unreadable", details=problems,
                   fix="check the name (huggingface.co/ORG/NAME) and the network; a mirror"
                   " goes in labctl.yaml's network.hf_endpoint")


# --- a snapshot as a bundle carries it (`labctl save --with-data hf:...`) ----------------
@dataclass(frozen=True)
class Snapshot:
    """A repository's snapshot in the hub cache, without links: each file's blob, and
    each blob's file once (several files may share one)."""

    ref: HfRef
    commit: str
    files: dict[str, str]  # path in the snapshot -> blob name
    blobs: dict[str, Path]  # blob name -> its file in the cache


def snapshot(lab: Lab, ref: HfRef) -> Snapshot:
    """The snapshot `labctl data get` (or any lab's from_pretrained) left in the cache:
    its links into the repository's blobs/ read; a link anywhere else is refused, so a
    save never carries a file from outside the cache."""
    cache = hub_cache(lab)
    folder = cache / ref.folder
    commit, snap = _snapshot_dir(folder, ref.revision)
    if not COMMIT.fullmatch(commit) or not snap.is_dir():
        raise LabError(f"--with-data {ref.name}: not in the lab's Hugging Face cache"
                       f" ({lab.rel(folder)})", id="bundle.hf-not-fetched",
                       fix=f"labctl data get {ref.name}")
    blobs_dir = (folder / "blobs").resolve()
    files: dict[str, str] = {}
    blobs: dict[str, Path] = {}

    def refused(rel: str) -> LabError:
        return LabError(f"--with-data {ref.name}: {rel} in the cache is not a file of the"
                        " repository's blobs/", id="bundle.hf-bad-link",
                        fix=f"fetch it again: `labctl data get {ref.name}`")

    # A lab's container may write the cache: a snapshot folder that is a link (to a home
    # folder, say) would carry whatever it leads to.
    if snap.resolve() != cache.resolve() / ref.folder / "snapshots" / commit:
        raise refused(f"{ref.folder}/snapshots/{commit}")
    for root, dirs, names in os.walk(snap):
        for d in dirs:
            if Path(root, d).is_symlink():
                raise refused(Path(root, d).relative_to(snap).as_posix())
        for name in names:
            path = Path(root, name)
            rel = path.relative_to(snap).as_posix()
            if path.is_symlink():
                src = path.resolve()
                blob = src.name
                ok = src.parent == blobs_dir and src.is_file() and bool(BLOB.fullmatch(blob))
            else:
                src, ok = path, path.is_file()
                blob = blob_name(path) if ok else ""
            if not ok:
                raise refused(rel)
            files[rel], blobs[blob] = blob, src
    return Snapshot(ref, commit, files, blobs)


def blob_name(path: Path, length: int = 64) -> str:
    """A file's blob name in the hub cache: the SHA-256 of an LFS file (64 hex digits),
    git's blob SHA-1 of a small one (40)."""
    digest = hashlib.sha256() if length == 64 else hashlib.sha1(
        f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
