"""Disk use: what this lab folder's images, containers, folders and labctl's build cache
cost, counted the way the disk holds them (a layer shared by images once), what `labctl
prune` may free, and whether a build fits on the engine's disk.

labctl's images carry labels (labels.LAB = the lab folder, labels.SPEC): they are what
"made by labctl" and "of this lab folder" mean here; the current image of a spec is
``lab.image_tag(spec)``. An image without those labels, an image a container uses, a
current image and every file of the lab folder are never candidates for removal.
Layer sizes are the engine's own (`docker history`, the per-layer figures `docker system
df` adds up), keyed by chain id, so two images that share a layer count it once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from labctl import labels
from labctl.chains import chain_ids
from labctl.data import catalogue
from labctl.errors import LabError
from labctl.image.layers import UV_CACHE

if TYPE_CHECKING:
    from labctl.config.lab import Lab
    from labctl.engine import Engine

GB = 1000**3
DEFAULT_BUDGET = 10 * GB
MARGIN = 1.1  # a build writes about what the previous one did; a tenth more to be safe
# BuildKit's cache mounts of labctl's Dockerfiles (layers.BK_UV / BK_APT), by target:
# the engine (20.10) names a mount's target in its record, not its id.
CACHE_MOUNTS = {UV_CACHE: "uv", "/var/lib/apt/lists": "apt", "/var/cache/apt/archives": "apt"}
# History steps that write no layer (Dockerfile metadata instructions).
_EMPTY = {"ENV", "ARG", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "SHELL", "USER", "VOLUME",
          "STOPSIGNAL", "HEALTHCHECK", "ONBUILD", "MAINTAINER"}
_NOP = re.compile(r"#\(nop\)\s+(\w+)")


def human(n: int | float | None) -> str:
    """Bytes for people: GB with one decimal (MB below a tenth of a GB)."""
    if n is None:
        return "?"
    if abs(n) >= GB / 10:
        return f"{n / GB:.1f} GB"
    return f"{n / 1000**2:.0f} MB" if abs(n) >= 1000**2 else f"{n / 1000:.0f} kB"


# --- layers ----------------------------------------------------------------------------
def _writes_layer(created_by: str) -> bool:
    """Whether a history step made a layer, from its instruction (its size cannot say:
    a layer may be empty)."""
    text = created_by.strip()
    m = _NOP.search(text)
    word = m[1] if m else text.split(maxsplit=1)[0] if text else ""
    return word.upper() not in _EMPTY


def layer_sizes(diff_ids: list[str], history: list[dict[str, Any]]) -> dict[str, int]:
    """chain id -> bytes of each layer of an image, from its RootFS layers and its
    `docker history` (newest first, as the engine answers). The engine sizes the steps
    that made a layer, in layer order; a step with a size made one, and of the steps of
    size 0, those whose instruction writes a layer are taken first."""
    steps = [(int(h.get("Size") or 0), str(h.get("CreatedBy") or "")) for h in reversed(history)]
    need = len(diff_ids)
    chosen = [size > 0 for size, _ in steps]
    zero = [i for i, (size, _) in enumerate(steps) if size == 0]
    ranked = [i for i in zero if _writes_layer(steps[i][1])] + \
        [i for i in reversed(zero) if not _writes_layer(steps[i][1])]
    for i in ranked[:max(need - sum(chosen), 0)]:
        chosen[i] = True
    sizes = [size for (size, _), c in zip(steps, chosen, strict=True) if c]
    sizes = (sizes + [0] * need)[:need]
    if sum(chosen) > need:  # more sized steps than layers: the history is not this image's
        sizes = [0] * need
    return dict(zip(chain_ids(diff_ids), sizes, strict=True))


@dataclass
class Image:
    """One image of the engine, as disk use sees it."""

    id: str
    tags: list[str]
    labels: dict[str, str]
    size: int  # the engine's Size: every layer of it
    created: int = 0
    chains: list[str] = field(default_factory=list)  # its layers, bottom first
    layers: dict[str, int] = field(default_factory=dict)  # chain -> bytes (lab images)

    @property
    def spec(self) -> str:
        return self.labels.get(labels.SPEC, "")

    def of_lab(self, root: str) -> bool:
        return self.labels.get(labels.LAB) == root and bool(self.spec)

    def counts_for(self, lab: Lab) -> bool:
        """An image of this lab folder's: built by it, or the one its tag names (another
        lab folder may have built the same spec)."""
        return self.of_lab(str(lab.root)) or (
            bool(self.spec) and lab.image_tag(self.spec) in self.tags)


def union(images: Iterable[Image]) -> int:
    """Bytes of these images together, each layer once."""
    seen: dict[str, int] = {}
    for img in images:
        seen.update(img.layers)
    return sum(seen.values())


def unique_part(img: Image, others: Iterable[Image]) -> int:
    """Bytes of ``img``'s layers that none of ``others`` has."""
    held = {c for o in others if o.id != img.id for c in o.chains}
    return sum(size for chain, size in img.layers.items() if chain not in held)


def freed_by(removed: list[Image], kept: Iterable[Image]) -> int:
    """What removing ``removed`` frees: their layers, once, that no kept image holds."""
    held = {c for k in kept for c in k.chains}
    gone: dict[str, int] = {}
    for img in removed:
        gone.update({c: s for c, s in img.layers.items() if c not in held})
    return sum(gone.values())


# --- build cache -------------------------------------------------------------------------
def cache_kind(rec: dict[str, Any]) -> str:
    """uv / apt: labctl's cache mounts; labctl: a layer of one of labctl's builds;
    other: the rest (other builds', context transfers)."""
    desc = str(rec.get("Description") or "")
    if rec.get("Type") == "exec.cachemount":
        m = re.match(r"cached mount (\S+) from exec", desc)
        if m and m[1] in CACHE_MOUNTS and "labctl" in desc.lower():
            return CACHE_MOUNTS[m[1]]
        return "other"
    if rec.get("Type") == "regular" and ("/opt/labctl" in desc or "LABCTL_" in desc):
        return "labctl"
    return "other"


def cache_bytes(rec: dict[str, Any]) -> int:
    """What a record holds on its own: a record shared with an image is the image's."""
    return 0 if rec.get("Shared") else int(rec.get("Size") or 0)


def trim_plan(records: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """labctl's records to remove so that its build cache is within ``budget`` bytes:
    the least recently used layers first, the cache mounts (uv, apt: what makes rebuilds
    fast) last; never a record in use or shared with an image (removing it frees
    nothing)."""
    ours = [r for r in records if cache_kind(r) != "other"]
    total = sum(cache_bytes(r) for r in ours)
    if total <= budget:
        return []
    free = [r for r in ours if not r.get("InUse") and cache_bytes(r) > 0]
    free.sort(key=lambda r: (cache_kind(r) in ("uv", "apt"), str(r.get("LastUsedAt") or "")))
    out = []
    for r in free:
        if total <= budget:
            break
        out.append(r)
        total -= cache_bytes(r)
    return out


@dataclass
class CacheUse:
    uv: int = 0
    apt: int = 0
    labctl: int = 0  # labctl's builds' layers held only by the cache
    other: int = 0
    budget: int = DEFAULT_BUDGET

    @property
    def ours(self) -> int:
        return self.uv + self.apt + self.labctl

    def as_dict(self) -> dict[str, int]:
        return {"uv": self.uv, "apt": self.apt, "labctl_layers": self.labctl,
                "labctl_total": self.ours, "other": self.other, "budget": self.budget}


def cache_use(records: list[dict[str, Any]], budget: int) -> CacheUse:
    use = CacheUse(budget=budget)
    for r in records:
        kind = cache_kind(r)
        setattr(use, kind, getattr(use, kind) + cache_bytes(r))
    return use


# --- the engine's state, read once -------------------------------------------------------
@dataclass
class Inventory:
    images: list[Image]
    containers: list[dict[str, Any]]
    cache: list[dict[str, Any]]
    root: str = ""
    free: int | None = None


def gather(engine: Engine, lab: Lab, *, sizes: bool = True) -> Inventory:
    """Every image (its layers' chain ids; the sizes of each layer for this lab's images
    and ``sizes``), every container and the build cache records."""
    try:
        df = engine.disk_usage()
    except LabError:
        # Docker 20.10 fails the whole report when one build-cache record is stale: the
        # images and containers from their own lists, no build cache figures
        df = {"Images": engine.image_rows(), "Containers": engine.container_rows(size=True),
              "BuildCache": []}
    images = []
    for row in df.get("Images") or []:
        info = engine.inspect_image(row["Id"])
        if info is None:
            continue
        diff_ids = list((info.get("RootFS") or {}).get("Layers") or [])
        tags = [t for t in row.get("RepoTags") or [] if t != "<none>:<none>"]
        img = Image(row["Id"], tags, dict(row.get("Labels") or {}), int(row.get("Size") or 0),
                    int(row.get("Created") or 0), chain_ids(diff_ids))
        if sizes and img.counts_for(lab):
            img.layers = layer_sizes(diff_ids, engine.history(img.id))
        images.append(img)
    containers = list(df.get("Containers") or [])
    where, free = engine.data_root_free()
    return Inventory(images, containers, list(df.get("BuildCache") or []), where, free)


# --- the report of `labctl df` -----------------------------------------------------------
@dataclass
class ImageUse:
    id: str
    tags: list[str]
    size: int
    shared: int  # bytes of layers other images hold too
    unique: int  # bytes only this image holds
    state: str  # current | old | tagged (another tag of the same spec)
    containers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "tags": self.tags, "size": self.size, "shared": self.shared,
                "unique": self.unique, "state": self.state, "containers": self.containers}


@dataclass
class SpecUse:
    spec: str
    tag: str
    image: ImageUse | None
    older: list[ImageUse]  # untagged: left by rebuilds
    containers: list[dict[str, object]]
    tagged: list[ImageUse] = field(default_factory=list)  # under other names (kept)

    @property
    def older_bytes(self) -> int:
        """What the older images hold that no other image does."""
        return sum(o.unique for o in self.older)

    def as_dict(self) -> dict[str, object]:
        return {"spec": self.spec, "tag": self.tag,
                "image": self.image.as_dict() if self.image else None,
                "older": [o.as_dict() for o in self.older],
                "tagged": [t.as_dict() for t in self.tagged], "containers": self.containers}


@dataclass
class FolderUse:
    volume: str
    path: str
    size: int
    entries: dict[str, int] = field(default_factory=dict)  # catalogue entry -> bytes

    def as_dict(self) -> dict[str, object]:
        return {"volume": self.volume, "path": self.path, "size": self.size,
                "entries": self.entries}


@dataclass
class DiskReport:
    lab: str
    specs: list[SpecUse]
    images_total: int  # every image of this lab folder, each layer once
    folders: list[FolderUse]
    cache: CacheUse
    prune: PrunePlan
    root: str
    free: int | None

    @property
    def folders_total(self) -> int:
        return sum(f.size for f in self.folders)

    def as_dict(self) -> dict[str, object]:
        return {"lab": self.lab, "specs": [s.as_dict() for s in self.specs],
                "images_total": self.images_total,
                "folders": [f.as_dict() for f in self.folders],
                "folders_total": self.folders_total,
                "build_cache": self.cache.as_dict(), "prune": self.prune.as_dict(),
                "data_root": self.root, "free": self.free}


def folder_size(path: Path) -> int:
    """Bytes on disk under ``path`` (links not followed, each inode once)."""
    total, seen = 0, set()
    try:
        top = path.lstat()
    except OSError:
        return 0
    if not stat.S_ISDIR(top.st_mode):
        return top.st_blocks * 512
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen or stat.S_ISLNK(st.st_mode):
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def folders_use(lab: Lab) -> list[FolderUse]:
    """Each volume folder of the lab that exists, and the catalogue entries in it."""
    try:
        cat = catalogue.load(lab.root)
    except LabError:
        cat = None
    out = []
    for name, vol in lab.volumes.items():
        path = lab.host_path(vol)
        if not path.is_dir():
            continue
        use = FolderUse(name, str(path), folder_size(path))
        for entry_name, entry in (cat.entries.items() if cat else []):
            if entry.volume != name:
                continue
            got = sum(folder_size(path / PurePosixPath(f.to)) for f in entry.files)
            if got:
                use.entries[entry_name] = got
        out.append(use)
    return out


def report(engine: Engine, lab: Lab, names: Iterable[str] = (), *, budget: int | None = None,
           inv: Inventory | None = None) -> DiskReport:
    inv = inv or gather(engine, lab)
    budget = lab.settings.build_cache_budget if budget is None else budget
    root = str(lab.root)
    ours = [i for i in inv.images if i.of_lab(root)]
    by_image: dict[str, list[str]] = {}
    for c in inv.containers:
        by_image.setdefault(str(c.get("ImageID") or ""), []).append(
            str((c.get("Names") or ["?"])[0]).lstrip("/"))
    specs = []
    for name in list(names) or sorted({*lab.spec_names(), *(i.spec for i in ours)}):
        tag = lab.image_tag(name)

        def use(img: Image, tag: str = tag) -> ImageUse:
            unique = unique_part(img, inv.images)
            state = "current" if tag in img.tags else "old" if not img.tags else "tagged"
            return ImageUse(img.id, img.tags, sum(img.layers.values()) or img.size,
                            sum(img.layers.values()) - unique, unique, state,
                            by_image.get(img.id, []))

        mine = [i for i in ours if i.spec == name]
        # The tag is what this lab runs, even when another lab folder built that image.
        current = next((i for i in inv.images if tag in i.tags and i.spec == name), None)
        conts = [{"name": str((c.get("Names") or ["?"])[0]).lstrip("/"),
                  "state": c.get("State"), "image": c.get("ImageID"),
                  "size": int(c.get("SizeRw") or 0)}
                 for c in inv.containers
                 if (c.get("Labels") or {}).get(labels.LAB) == root
                 and (c.get("Labels") or {}).get(labels.SPEC) == name]
        rest = [i for i in sorted(mine, key=lambda i: -i.created) if i is not current]
        specs.append(SpecUse(name, tag, use(current) if current else None,
                             [use(i) for i in rest if not i.tags], conts,
                             [use(i) for i in rest if i.tags]))
    plan = plan_prune(inv, lab, budget, containers=True)
    shown = {s.spec for s in specs}
    return DiskReport(root, specs, union(i for i in inv.images
                                         if i.counts_for(lab) and i.spec in shown),
                      folders_use(lab), cache_use(inv.cache, budget), plan, inv.root, inv.free)


# --- prune ---------------------------------------------------------------------------------
@dataclass
class PruneItem:
    kind: str  # image | container | build-cache
    id: str
    name: str
    size: int
    why: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "size": self.size,
                "why": self.why}


@dataclass
class PrunePlan:
    items: list[PruneItem] = field(default_factory=list)
    images_bytes: int = 0  # the removed images' layers that no kept image holds
    containers: bool = False  # whether kept containers are included

    @property
    def total(self) -> int:
        return self.images_bytes + sum(i.size for i in self.items if i.kind != "image")

    def as_dict(self) -> dict[str, object]:
        return {"items": [i.as_dict() for i in self.items], "images_bytes": self.images_bytes,
                "bytes": self.total}

    def as_dict_unapplied(self, *, dry_run: bool) -> dict[str, object]:
        """`prune --json` when nothing is removed: a --dry-run's plan, or an empty plan
        with the figures of a prune (nothing removed, nothing freed), --dry-run or not."""
        if dry_run and self.items:
            return {"plan": self.as_dict(), "dry_run": True}
        return {"plan": self.as_dict(), "removed": [], "freed": 0}


def plan_prune(inv: Inventory, lab: Lab, budget: int, *, containers: bool) -> PrunePlan:
    """What labctl made for this lab folder and no longer needs: its images that no
    current tag names and no container uses, its stopped lab containers (``containers``),
    and its build cache over ``budget``."""
    root = str(lab.root)
    uid = str(os.getuid())
    plan = PrunePlan(containers=containers)
    gone_containers: set[str] = set()
    if containers:
        for c in inv.containers:
            lab_labels = c.get("Labels") or {}
            if (labels.RUN in lab_labels and lab_labels.get(labels.LAB) == root
                    and lab_labels.get(labels.OWNER) == uid
                    and c.get("State") in ("exited", "created", "dead")):
                gone_containers.add(str(c.get("Id")))
                plan.items.append(PruneItem(
                    "container", str(c.get("Id"))[:12],
                    str((c.get("Names") or ["?"])[0]).lstrip("/"), int(c.get("SizeRw") or 0),
                    "a stopped lab container"))
    used = {str(c.get("ImageID") or "") for c in inv.containers
            if str(c.get("Id")) not in gone_containers}
    removed = []
    for img in inv.images:
        if not img.of_lab(root) or img.tags or img.id in used:
            continue  # not this lab's, tagged (current, or named by someone), or in use
        removed.append(img)
        plan.items.append(PruneItem("image", img.id.removeprefix("sha256:")[:12],
                                    f"{img.spec} (untagged)", unique_part(img, inv.images),
                                    "an older build of the spec, no longer tagged"))
    kept = [i for i in inv.images if i not in removed]
    plan.images_bytes = freed_by(removed, kept)
    why = f"build cache over the budget ({human(budget)})"
    for r in trim_plan(inv.cache, budget):
        plan.items.append(PruneItem("build-cache", str(r.get("ID")), cache_kind(r),
                                    cache_bytes(r), why))
    return plan


def prune_plan(engine: Engine, lab: Lab, *, containers: bool) -> PrunePlan:
    """`labctl prune`'s plan: the engine's state read now, the lab's build cache budget."""
    return plan_prune(gather(engine, lab), lab, lab.settings.build_cache_budget,
                      containers=containers)


@dataclass
class PruneResult:
    plan: PrunePlan
    removed: list[PruneItem]
    skipped: list[PruneItem]
    freed: int  # estimated from the plan's figures (images) and the engine's (cache)
    measured: int | None  # the engine disk's free space after minus before

    def as_dict(self) -> dict[str, object]:
        return {"plan": self.plan.as_dict(), "removed": [i.as_dict() for i in self.removed],
                "skipped": [i.as_dict() for i in self.skipped], "freed": self.freed,
                "measured": self.measured}


def apply_prune(engine: Engine, plan: PrunePlan) -> PruneResult:
    """Remove the plan's items: containers first (their images may then go), then the
    images (never forced: one a container took meanwhile stays), then build cache."""
    _, before = engine.data_root_free()
    removed, skipped = [], []
    freed = 0
    for item in [i for i in plan.items if i.kind == "container"]:
        c = engine.container(item.id)
        if c is not None and c.status in ("exited", "created", "dead"):
            engine.remove_container(c)
            removed.append(item)
            freed += item.size
        else:
            skipped.append(item)
    images = [i for i in plan.items if i.kind == "image"]
    for item in images:
        (removed if engine.remove_image_id(item.id) else skipped).append(item)
    if images and not any(i in skipped for i in images):
        freed += plan.images_bytes
    else:
        freed += sum(i.size for i in images if i in removed)
    cache = [i for i in plan.items if i.kind == "build-cache"]
    if cache:
        freed += engine.prune_build_records([i.id for i in cache])
        removed += cache
    _, after = engine.data_root_free()
    measured = after - before if before is not None and after is not None else None
    return PruneResult(plan, removed, skipped, freed, measured)


def trim_build_cache(engine: Engine, budget: int) -> int:
    """Keep labctl's build cache within ``budget``: the bytes freed (0: it was)."""
    plan = trim_plan(list(engine.disk_usage().get("BuildCache") or []), budget)
    return engine.prune_build_records([str(r["ID"]) for r in plan]) if plan else 0


# --- room for a build -----------------------------------------------------------------------
@dataclass
class Need:
    spec: str
    bytes: int | None  # None: nothing to size it from
    basis: str
    free: int | None
    root: str

    @property
    def fits(self) -> bool:
        return self.bytes is None or self.free is None or self.free >= self.bytes

    def as_dict(self) -> dict[str, object]:
        return {"spec": self.spec, "bytes": self.bytes, "basis": self.basis,
                "free": self.free, "data_root": self.root, "fits": self.fits}


def step_hashes(dockerfile: str, files: dict[str, bytes]) -> list[str]:
    """A short hash of each step of a Dockerfile after FROM, each covering every step
    before it, its instruction and the context files it names (what a builder's cache
    key covers, near enough): two builds' steps are the same layers while these agree."""
    # the renderer brings jinja2: only a build's estimate needs it, not df, prune or data rm
    from labctl.image.render import _instructions

    h = hashlib.sha256()
    out = []
    for ins in (i for i in _instructions(dockerfile) if not i.startswith("#")):
        h.update(ins.encode() + b"\0")
        for token in ins.split():
            token = token.split("source=")[-1].split(",")[0].rstrip("/")
            for name in sorted(n for n in files if n == token or n.startswith(token + "/")):
                h.update(name.encode() + b"\0" + files[name])
        if not ins.upper().startswith("FROM "):
            out.append(h.hexdigest()[:8])
    return out


def need_from(steps: list[str], previous: list[str], sizes: list[int]) -> tuple[int, int]:
    """(bytes a build writes, the step it starts writing at): the sizes the previous
    build's steps had (``sizes``, oldest first, one per step of ``previous``) from the
    first step whose hash differs; steps beyond the previous build's count as its last."""
    same = 0
    while same < min(len(steps), len(previous)) and steps[same] == previous[same]:
        same += 1
    if same == len(steps):
        return 0, same
    return int(sum(sizes[same:]) * MARGIN), same


def estimate(engine: Engine, lab: Lab, spec: str, base: str, steps: list[str] | None = None
             ) -> Need:
    """How much the build of ``spec`` needs on the engine's disk, from the latest previous
    build of it: the sizes of its steps from the first one that changes (``steps``, from
    step_hashes; every step when not given or that build did not record its steps), and
    how much the engine's disk has free."""
    rows = engine.image_rows([f"{labels.SPEC}={spec}", f"{labels.LAB}={lab.root}"])
    rows.sort(key=lambda r: -int(r.get("Created") or 0))
    root, free = engine.data_root_free()
    if not rows:
        return Need(spec, None, "no previous build to size it from", free, root)
    prev = rows[0]
    history = [int(h.get("Size") or 0) for h in reversed(engine.history(prev["Id"]))]
    base_steps = len(engine.history(base)) if engine.image(base) is not None else 0
    if base_steps > len(history):
        base_steps = 0
    sizes = history[base_steps:]
    recorded = [s for s in str((prev.get("Labels") or {}).get(labels.STEPS) or "").split(",")
                if s]
    if steps is None or not recorded or len(recorded) + 1 != len(sizes):
        need = int(sum(sizes) * MARGIN)  # its LABEL step, last, is not among the steps
        return Need(spec, need, "the previous build's layers above the base image", free,
                    root)
    need, same = need_from(steps, recorded, sizes[:-1])
    basis = ("the previous build's sizes of the steps that change, from step"
             f" {same + 1}/{len(steps)}" if need else "every step is the previous build's")
    return Need(spec, need, basis, free, root)


def room_error(need: Need) -> LabError:
    return LabError(
        f"not enough disk space to build '{need.spec}': it needs about {human(need.bytes)}"
        f" ({need.basis}), the engine's disk ({need.root}) has {human(need.free)} free",
        id="disk.no-room", details=["nothing was built; the previous image stays tagged"],
        fix="`labctl prune` frees old images and build cache over the budget (`labctl df`"
        " shows what it would free), or lower build_cache_budget in labctl.yaml; free other"
        " space on that disk; then build again (LABCTL_NO_DISK_CHECK=1 skips this check)")


def check_room(engine: Engine, lab: Lab, spec: str, base: str,
               steps: list[str] | None = None) -> Need:
    """Refuse a build the engine's disk has no room for, before it starts."""
    if os.environ.get("LABCTL_NO_DISK_CHECK"):
        return Need(spec, None, "check skipped (LABCTL_NO_DISK_CHECK)", None, "")
    need = estimate(engine, lab, spec, base, steps)
    if not need.fits:
        raise room_error(need)
    return need


# --- `labctl data rm` ------------------------------------------------------------------------
def _top_names(archive: Path, kind: str) -> list[str]:
    """The top-level names an archive unpacks (store.unpack moves those into place)."""
    if kind == "gunzip":
        return [archive.name.removesuffix(".gz")]
    try:
        if kind == "unzip":
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
        else:
            with tarfile.open(archive) as tf:
                names = tf.getnames()
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError):
        return []
    tops = {n.strip("/").split("/")[0] for n in names if n.strip("/")}
    return sorted(t for t in tops if t not in ("", ".", ".."))


def entry_paths(root: Path, cat: catalogue.Catalogue, name: str, extra: list[Path]
                ) -> list[Path]:
    """What `labctl data rm NAME` removes from its volume folder ``root``: the entry's
    files where its library looks, what labctl unpacked from them (the archive's top-level
    names, kept when another entry's files are in there) and ``extra`` (its partial
    downloads and labctl's records of them: data.store's places); only paths inside that
    folder (a link on the way out of it is not followed)."""
    entry = cat.entries[name]
    base = root.resolve()
    others = {(root / f.to).resolve() for n, e in cat.entries.items() if n != name
              and e.volume == entry.volume for f in e.files}
    out: list[Path] = []
    for f in entry.files:
        dest = root / PurePosixPath(f.to)
        if f.extract and dest.is_file():
            into = root / f.unpack_into
            for top in _top_names(dest, f.extract):
                p = into / top
                real = p.resolve() if not p.is_symlink() else p
                if any(o == real or real in o.parents for o in others):
                    continue
                out.append(p)
        out.append(dest)
    out += extra
    seen: list[Path] = []
    for p in out:
        if not (p.exists() or p.is_symlink()) or p in seen:
            continue
        parent = p.parent.resolve()
        if parent != base and base not in parent.parents:
            continue  # a link on the way leads out of the volume folder: not ours to remove
        seen.append(p)
    return seen


def remove_paths(paths: list[Path]) -> int:
    """Remove these files and folders (a link itself, never what it points at); bytes."""
    freed = 0
    for p in paths:
        if p.is_symlink() or not p.is_dir():
            freed += folder_size(p)
            p.unlink(missing_ok=True)
        else:
            freed += folder_size(p)
            shutil.rmtree(p)
    return freed
