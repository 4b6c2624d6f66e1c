"""The ways out of a dependency conflict: which of the spec's requirements collide, and which
one change (a requirement relaxed, or one side dropped) lets the rest resolve, to which
versions, ranked by how little it changes. And `labctl why`: what brings a package in.

The search runs the resolver `labctl lock` uses (uv, in the spec's own base image and
Python, with the lab's indexes) in ONE throw-away container (incontainer/tools/conflicts.py)
over variants of the requirements, bounded in time and number of resolutions. Everything
but `search` is pure: uv's explanation parsed, the variants, the ranking, the spec edit.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from labctl.config import yamlfile
from labctl.errors import LabError

if TYPE_CHECKING:
    from labctl.config.lab import Lab
    from labctl.config.lockfile import LockFile
    from labctl.config.spec import ImageSpec

SECONDS = 180  # the search's time limit
RESOLUTIONS = 24  # and its number of resolutions
MOVABLE = ("pip", "extras")  # the spec's lists whose lines a way out rewrites
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DEPENDS = re.compile(r"depends? on ([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])")


# --- the conflict, from uv's explanation ---------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """Which of the spec's requirements collide, and through which package."""

    involved: tuple[str, ...]  # the spec's requirements, as written there
    through: str | None  # the package whose versions they disagree on
    reasons: tuple[str, ...]  # uv's clauses about that package
    explanation: tuple[str, ...]  # uv's explanation, as it printed it
    named: bool  # uv named them (else every movable requirement is tried)

    def headline(self) -> str:
        if len(self.involved) >= 2:
            who = " and ".join([", ".join(self.involved[:-1]), self.involved[-1]])
            head = f"{who} cannot be installed together"
        elif self.involved:
            head = f"{self.involved[0]} cannot be installed with the rest of the spec"
        else:
            head = "the spec's requirements cannot be installed together"
        return head + (f": they need different versions of {self.through}"
                       if self.through else "")

    def as_dict(self) -> dict[str, object]:
        return {"involved": list(self.involved), "through": self.through,
                "reasons": list(self.reasons), "explanation": list(self.explanation),
                "named_by_resolver": self.named}


def is_conflict(text: str) -> bool:
    """The resolver's output says the requirements cannot be satisfied together."""
    low = text.lower()
    return bool(explanation(text)) and any(
        w in low for w in ("no solution found", "unsatisfiable", "are incompatible"))


# After uv's explanation in a build's output: the builder's own lines.
_AFTER = ("------", "ERROR", "Dockerfile", "The command", "executor failed", "error: process",
          "instruction:", "labctl:", "Removing intermediate")


def explanation(text: str) -> list[str]:
    """uv's explanation, from "No solution found" on, without its prefixes or the build's
    (a build's error keeps only the last lines of output: then from the first reasoning
    line on)."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if "no solution found" in ln.lower()), None)
    if start is None:
        if not re.search(r"we can conclude|unsatisfiable", text, re.I):
            return []
        start = next((i for i, ln in enumerate(lines)
                      if re.search(r"because|we can conclude|depends? on|unsatisfiable",
                                   ln, re.I)), None)
        if start is None:
            return []
    out = []
    for ln in lines[start:]:
        # uv's own prefixes, and BuildKit's "#12 3.4 " before a build's output
        s = re.sub(r"^\s*(?:#\d+\s+[\d.]+\s+)?[\s|×╰─▶]*(?:error:|cause:|hint:)?\s*",
                   "", ln).rstrip()
        if s.startswith(_AFTER):
            break
        if s:  # uv's paragraphs are apart by blank lines
            out.append(s)
    return out


def _name(text: str) -> str:
    m = _NAME.match(text.strip())
    return canonicalize_name(m[0]) if m else ""


def parse_conflict(text: str, requirements: Iterable[str],
                   movable: Iterable[str] | None = None) -> Conflict:
    """Which of ``requirements`` uv's explanation (in ``text``) names as colliding.

    uv ends with "because you require A and B, we can conclude that your requirements are
    unsatisfiable": those are the learner's requirements in the conflict. Without that
    sentence, every requirement the explanation mentions; without any, every one of
    ``movable`` (the search then tries them all)."""
    reqs = list(requirements)
    by_name = {_name(r): r for r in reqs}
    lines = explanation(text)
    flat = " ".join(lines)
    named: list[str] = []
    for m in re.finditer(r"you require (.+?)(?:, we can conclude|$)", flat):
        for part in re.split(r",\s+|\s+and\s+", m[1]):
            name = _name(part)
            if name in by_name and by_name[name] not in named:
                named.append(by_name[name])
    if len(named) < 2:
        words = {canonicalize_name(w.rstrip(".-_")) for w in _NAME.findall(flat)}
        named += [r for n, r in by_name.items() if n in words and r not in named]
    found = bool(named)
    if not named:
        named = list(movable if movable is not None else reqs)
    counts: dict[str, int] = {}
    for m in _DEPENDS.finditer(flat):
        n = canonicalize_name(m[1])
        if n not in by_name:
            counts[n] = counts.get(n, 0) + 1
    through = max(counts, key=lambda n: counts[n]) if counts else None
    reasons: dict[str, str] = {}  # the last clause about `through` of each package
    if through:
        clause = re.compile(r"((?:all versions of )?[A-Za-z0-9]\S* depends? on \S+)")
        for m in clause.finditer(flat):
            target = _DEPENDS.search(m[1])
            if target and canonicalize_name(target[1]) == through:
                c = m[1].rstrip(",.")
                who = _name(c.removeprefix("all versions of "))
                reasons.pop(who, None)
                reasons[who] = c
    mine = {_name(r) for r in named}
    order = sorted(reasons, key=lambda n: n not in mine)  # the learner's packages first
    return Conflict(tuple(named), through, tuple(reasons[n] for n in order[:4]), tuple(lines),
                    found)


# --- the variants the search resolves ------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    id: str
    kind: str  # alone | relax | low | drop | relax-all
    target: tuple[str, ...]  # the spec's requirements it moves
    requirements: tuple[str, ...]
    resolution: str = "highest"
    pin_from: str | None = None
    pin: tuple[str, ...] = ()

    def job(self) -> dict[str, object]:
        return {"id": self.id, "requirements": list(self.requirements),
                "resolution": self.resolution, "pin_from": self.pin_from,
                "pin": list(self.pin)}


def _req(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _bare(req: Requirement) -> str:
    """The requirement with no version: its name, extras and marker."""
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    return f"{req.name}{extras}{marker}"


def _with(req: Requirement, spec: str) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    return f"{req.name}{extras}{spec}{marker}"


def upper_bound(spec: SpecifierSet) -> str | None:
    """The clause just above ``spec``'s versions (">=4.45" for "<4.45"), or None."""
    best: tuple[Version, str] | None = None
    for s in spec:
        if s.operator in ("<", "<=", "==", "===") and "*" not in s.version:
            try:
                v = Version(s.version)
            except InvalidVersion:
                continue
            op = ">=" if s.operator == "<" else ">"
            if best is None or v < best[0]:
                best = (v, f"{op}{s.version}")
    return best[1] if best else None


def variants(requirements: list[str], involved: list[str], pinned: Iterable[str] = ()
             ) -> list[Variant]:
    """What the search resolves, most useful first (it may stop early): each involved
    requirement relaxed alone, dropped alone, resolved alone (the version it had), then
    the lowest version above its range that fits, then all relaxed together."""
    reqs = list(requirements)
    parsed = {r: _req(r) for r in involved}
    movable = [r for r in involved if parsed[r] is not None]
    names = [_name(r) for r in reqs]
    out: list[Variant] = []
    for i, r in enumerate(movable):
        req = parsed[r]
        assert req is not None
        relaxed = [(_bare(req) if x == r else x) for x in reqs]
        out.append(Variant(f"relax{i}", "relax", (r,), tuple(relaxed)))
    for i, r in enumerate(movable):
        out.append(Variant(f"drop{i}", "drop", (r,), tuple(x for x in reqs if x != r)))
    pinned = set(pinned)
    for i, r in enumerate(movable):
        if _name(r) not in pinned:
            out.append(Variant(f"alone{i}", "alone", (r,), (r,)))
    for i, r in enumerate(movable):
        req = parsed[r]
        assert req is not None
        above = upper_bound(req.specifier)
        if above is None:
            continue
        others = tuple(n for n, x in zip(names, reqs, strict=True) if x != r)
        low = [(_with(req, above) if x == r else x) for x in reqs]
        out.append(Variant(f"low{i}", "low", (r,), tuple(low), "lowest-direct",
                           f"relax{i}", others))
    if len(movable) > 1:
        every = [(_bare(parsed[x]) if x in movable and parsed[x] else x)  # type: ignore[arg-type]
                 for x in reqs]
        out.append(Variant("relax-all", "relax-all", tuple(movable), tuple(every)))
    return out


# --- the ways out, ranked ------------------------------------------------------------------


@dataclass(frozen=True)
class WayOut:
    kind: str  # relax | drop | relax-all
    moved: tuple[str, ...]  # the spec's requirements it changes, as written
    edits: tuple[tuple[str, str | None], ...]  # (old line, new line; None: removed)
    versions: Mapping[str, str]  # package -> the version it gets
    before: Mapping[str, str]  # package -> the version it had (or would have had alone)
    jump: tuple[int, int, int] = (0, 0, 0)
    least: Mapping[str, str] = field(default_factory=dict)  # the least version that fits

    def title(self) -> str:
        if self.kind == "drop":
            return f"drop {self.moved[0]}"
        parts = []
        for old, new in self.edits:
            name = _name(old)
            parts.append(f"relax {old} to {new}"
                         if new and _name(new) == name else f"relax {old}")
        return " and ".join(parts)

    def detail(self) -> str:
        moves = []
        names = [_name(o) for o, _ in self.edits]
        shown = names if self.kind != "drop" else [
            n for n in self.versions if n in self.before and n not in names]
        for n in shown:
            old, new = self.before.get(n), self.versions.get(n)
            least = self.least.get(n)
            tail = f", {least} the least that fits" if least and least != new else ""
            if new and old and old != new:
                moves.append(f"{n} {old} -> {new}{tail}")
            elif new:
                moves.append(f"{n} {new}{tail}")
        return ", ".join(moves)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "title": self.title(), "moved": list(self.moved),
                "edits": [{"old": o, "new": n} for o, n in self.edits],
                "versions": dict(self.versions), "before": dict(self.before),
                "least": dict(self.least), "jump": list(self.jump)}


def jump(old: str | None, new: str | None) -> tuple[int, int, int]:
    """How far a version moves: (major, minor, micro) differences, largest first."""
    try:
        a, b = Version(old or ""), Version(new or "")
    except InvalidVersion:
        return (0, 0, 0) if old == new else (99, 0, 0)
    ra, rb = [*a.release, 0, 0][:3], [*b.release, 0, 0][:3]
    for i in range(3):
        if ra[i] != rb[i]:
            return tuple(abs(rb[j] - ra[j]) if j == i else 0  # type: ignore[return-value]
                         for j in range(3))
    return (0, 0, 0)


def _relaxed_line(req: Requirement, new: str) -> str | None:
    """The spec line that admits version ``new`` (found outside ``req``'s range): at or
    above it when it is above the range (an exact pin stays exact), else at or below it."""
    if req.specifier.contains(new, prereleases=True):
        return None  # not a move: the range already holds it
    try:
        v = Version(new)
    except InvalidVersion:
        return None
    exact = any(s.operator in ("==", "===") for s in req.specifier)
    above = any(
        s.operator in ("<", "<=", "==", "===", "~=") and "*" not in s.version
        and not s.contains(v, prereleases=True) for s in req.specifier
    ) and not any(s.operator in (">", ">=") and not s.contains(v, prereleases=True)
                  for s in req.specifier)
    if exact:
        return _with(req, f"=={new}")
    return _with(req, f">={new}" if above else f"<={new}")


def _resolved(results: Mapping[str, Mapping[str, Any]], vid: str) -> Mapping[str, Any] | None:
    """A variant's result when it resolved: a failed one offers no versions to rank."""
    r = results.get(vid)
    return r if r and r.get("ok") else None


def _had(r: str, variants_: list[Variant], results: Mapping[str, Mapping[str, Any]],
         locked: Mapping[str, str]) -> str | None:
    """The version requirement ``r`` had before a way out moved it, so a way out can say
    how far it moves: the lock's, else its exact pin, else what it resolved to alone."""
    name = _name(r)
    if name in locked:
        return locked[name]
    req = _req(r)
    if req is not None:
        exact = [s.version for s in req.specifier if s.operator in ("==", "===")]
        if exact:
            return exact[0]
    for v in variants_:
        if v.kind == "alone" and v.target == (r,) and (res := _resolved(results, v.id)):
            return res["versions"].get(name)
    return None


def _drop_way(v: Variant, involved: list[str], got: Mapping[str, str],
              had: Callable[[str], str | None]) -> WayOut:
    """A drop that resolved: what the involved requirements it kept get, since the
    dropped one has no version to show."""
    kept = [_name(r) for r in involved if r not in v.target]
    before = {n: b for r in involved if r not in v.target
              for n in [_name(r)] if (b := had(r))}
    return WayOut("drop", v.target, ((v.target[0], None),),
                  {n: got[n] for n in kept if n in got}, before)


def _relax_way(v: Variant, got: dict[str, str], variants_: list[Variant],
               results: Mapping[str, Mapping[str, Any]],
               had: Callable[[str], str | None]) -> WayOut | None:
    """A relaxation that resolved, as the spec lines to write: None when one of its
    requirements has no line that admits what it got. ``got`` is updated in place where
    an exact pin moves to the lowest version that fits, so the way shows that version."""
    edits: list[tuple[str, str | None]] = []
    before, least = {}, {}
    size = (0, 0, 0)
    for r in v.target:
        req, name = _req(r), _name(r)
        high = got.get(name)
        line = _relaxed_line(req, high) if req is not None and high else None
        if req is None or high is None or line is None:
            return None
        lowest = high
        low = next((_resolved(results, x.id) for x in variants_
                    if x.kind == "low" and x.target == (r,)), None)
        lv = low["versions"].get(name) if low else None
        if v.kind == "relax" and lv and line != _with(req, f"<={high}"):  # moved up
            low_line = _relaxed_line(req, lv)
            if low_line and Version(lv) <= Version(high):
                line, lowest = low_line, lv
                if "==" in line:
                    got[name] = lv
        edits.append((r, line))
        least[name] = lowest
        if (old := had(r)) is not None:
            before[name] = old
        size = max(size, jump(old, lowest))
    return WayOut(v.kind, v.target, tuple(edits),
                  {_name(r): got[_name(r)] for r in v.target}, before, size, least)


def ways_out(variants_: list[Variant], results: Mapping[str, Mapping[str, Any]],
             locked: Mapping[str, str] | None = None) -> list[WayOut]:
    """The variants that resolved, as ways out, ranked: fewest requirements moved, a
    relaxed requirement before a dropped one, then the smallest version jump."""
    locked = dict(locked or {})

    def had(r: str) -> str | None:
        return _had(r, variants_, results, locked)

    involved = list(dict.fromkeys(t for v in variants_ if v.kind == "drop" for t in v.target))
    found: list[tuple[tuple[object, ...], WayOut]] = []
    for order, v in enumerate(variants_):
        res = _resolved(results, v.id)
        # "alone" and "low" only inform the others: the version before, the least that fits
        if res is None or v.kind in ("alone", "low"):
            continue
        got: dict[str, str] = dict(res["versions"])
        if v.kind == "drop":
            found.append(((len(v.target), 1, (0, 0, 0), order),
                          _drop_way(v, involved, got, had)))
            continue
        way = _relax_way(v, got, variants_, results, had)
        if way is not None:
            found.append(((len(v.target), 0, way.jump, order), way))
    found.sort(key=lambda t: t[0])
    return [w for _, w in found]


# --- the advice -----------------------------------------------------------------------------


@dataclass
class Advice:
    spec: str
    file: str  # the spec file, as the learner names it (images/NAME.yaml)
    conflict: Conflict
    ways: list[WayOut] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # what was tried and did not resolve
    resolutions: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the search stopped early ("" when it tried everything)

    def lines(self) -> list[str]:
        out = []
        if self.conflict.reasons:
            out.append("because " + "; ".join(self.conflict.reasons))
        if self.ways:
            out.append(f"ways out, smallest change first (the line to write in {self.file}):")
            for i, w in enumerate(self.ways, 1):
                if w.kind == "drop":
                    what = f"remove `{w.moved[0]}`"
                else:
                    what = "; ".join(f"`{n}` instead of `{o}`" for o, n in w.edits)
                detail = w.detail()
                out.append(f"  {i}. {w.title()}: {what}" + (f" ({detail})" if detail else ""))
        else:
            out.append("no way out found by moving one requirement"
                       + (" or all of them" if len(self.conflict.involved) > 1 else ""))
        if self.tried:
            out.append("not a way out: " + "; ".join(self.tried))
        end = f" (stopped early {self.stopped})" if self.stopped else ""
        out.append(f"searched with {self.resolutions} resolutions in {self.seconds:.0f}s{end}")
        return out

    def as_dict(self) -> dict[str, object]:
        return {"spec": self.spec, "file": self.file, "conflict": self.conflict.as_dict(),
                "ways_out": [w.as_dict() for w in self.ways], "not_ways_out": self.tried,
                "resolutions": self.resolutions, "seconds": round(self.seconds, 1),
                "stopped_early": self.stopped or None}


class ConflictError(LabError):
    """A resolution failure with the ways out found."""

    def __init__(self, advice: Advice, fix: str | None = None, file: str | None = None,
                 where: str = "") -> None:
        self.advice = advice
        if fix is None:
            fix = (f"`labctl add {advice.spec} --resolve` writes way 1, locks and builds"
                   f" (`--resolve=N` way N)" if advice.ways else
                   f"move one of {', '.join(advice.conflict.involved) or 'the requirements'}"
                   f" in {advice.file} by hand, then `labctl lock {advice.spec}`")
        head = advice.conflict.headline()
        super().__init__(f"{where}: {head}" if where else head, id="lock.conflict", file=file,
                         details=advice.lines(), fix=fix)
        self.extra["advice"] = advice.as_dict()  # --json: the ways out, for scripts


def tried(variants_: list[Variant], results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What was tried and did not resolve, in words."""
    out = []
    for v in variants_:
        r = results.get(v.id)
        if not r or r.get("ok") or v.kind in ("alone", "low"):
            continue
        what = {"relax": f"any version of {_name(v.target[0])}",
                "drop": f"dropping {v.target[0]}",
                "relax-all": "every one of them relaxed"}[v.kind]
        out.append(what)
    return out


def advice_from(spec: str, file: str, conflict: Conflict, variants_: list[Variant],
                output: str, seconds: float, locked: Mapping[str, str] | None = None
                ) -> Advice:
    """The advice from the search container's output (JSON lines)."""
    results: dict[str, dict[str, Any]] = {}
    done, stopped = 0, ""
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "id" in row:
            results[row["id"]] = row
        elif "done" in row:
            done, stopped = int(row["done"]), str(row.get("stopped") or "")
    return Advice(spec, file, conflict, ways_out(variants_, results, locked),
                  tried(variants_, results), done, seconds, stopped)


# --- the search, on the engine --------------------------------------------------------------


def requirements_of(spec: ImageSpec) -> tuple[list[str], list[str]]:
    """(everything `labctl lock` resolves together, the lines a way out may move)."""
    reqs: list[str] = []
    if spec.torch:
        from labctl.image.layers import torch_requirements

        reqs += torch_requirements(spec)
    reqs += [*spec.lab_packages, *spec.extras]
    movable = [r for r in [*spec.pip, *spec.extras] if r in reqs]
    return list(dict.fromkeys(reqs)), list(dict.fromkeys(movable))


Runner = Callable[[dict[str, str], list[str], float], tuple[int, str, str]]


def search(lab: Lab, spec: ImageSpec, text: str, run: Runner, *,
           seconds: float = SECONDS, resolutions: int = RESOLUTIONS,
           say: Callable[[str], None] = lambda m: None) -> Advice:
    """Search the ways out of the conflict uv explained in ``text``, in one container that
    ``run(files, command, timeout)`` starts (resolve.run_resolver: the lock's image,
    indexes and credentials)."""
    from labctl.config import lockfile

    start = time.monotonic()
    reqs, movable = requirements_of(spec)
    conflict = parse_conflict(text, reqs, movable)
    involved = [r for r in conflict.involved if r in movable] or movable
    try:
        lock = lockfile.read_lock(lockfile.lock_path(spec, lab.images_dir), spec.name)
    except LabError:
        lock = None
    locked = lock.versions() if lock else {}
    exact = {_name(r) for r in involved if (q := _req(r)) and any(
        s.operator in ("==", "===") for s in q.specifier)}
    todo = variants(reqs, involved, pinned=exact | set(locked))
    file = lab.rel(spec.source) if spec.source is not None else f"images/{spec.name}.yaml"
    if not todo:  # nothing the spec's lists could move (torch's own requirements)
        return Advice(spec.name, file, conflict, seconds=time.monotonic() - start)
    say(f"searching the ways out of the conflict ({len(todo)} resolutions at most)")
    job = {"seconds": seconds, "max": resolutions, "variants": [v.job() for v in todo]}
    status, out, err = run({"job.json": json.dumps(job), "conflicts.py": _tool()},
                           ["python3", "/in/conflicts.py", "/in/job.json"], seconds + 60)
    advice = advice_from(spec.name, file, conflict, todo, out, time.monotonic() - start,
                         locked)
    if status != 0 and not advice.stopped:
        advice.stopped = "(the search failed: " + " ".join(err.strip().splitlines()[-2:]) + ")"
    return advice


def _tool() -> str:
    from labctl import resources

    return resources.tool("conflicts.py")


# --- a way out written into the spec --------------------------------------------------------


def _item(req: str) -> str:
    """A requirement as a YAML scalar: quoted when YAML would read it otherwise."""
    plain = re.fullmatch(r"[A-Za-z0-9_.-]+([<>=!~]=?[A-Za-z0-9_.*+!-]+)?", req)
    return req if plain else "'" + req.replace("'", "''") + "'"


def _find(root: Node | None, old: str) -> tuple[str, SequenceNode, int] | None:
    """(list key, list node, index) of ``old`` in the file's own top-level `pip:` or
    `extras:` list: only those are the spec's lines a way out may move."""
    if isinstance(root, MappingNode):
        for k, v in root.value:
            if isinstance(k, ScalarNode) and k.value in MOVABLE and isinstance(v, SequenceNode):
                for i, item in enumerate(v.value):
                    if isinstance(item, ScalarNode) and item.value == old:
                        return k.value, v, i
    return None


def _without(text: str, seq: SequenceNode, i: int) -> str | None:
    """``text`` with item ``i`` of ``seq`` removed, its separator or line with it; None
    when a block item shares its line with something else (removing it would lose that)."""
    start, end = seq.value[i].start_mark.index, seq.value[i].end_mark.index
    if seq.flow_style:
        if i > 0:  # ", item"
            return text[:seq.value[i - 1].end_mark.index] + text[end:]
        if len(seq.value) > 1:  # "item, "
            return text[:start] + text[seq.value[1].start_mark.index:]
        return text[:start] + text[end:]
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end + 1
    rest = text[end:line_end].strip()
    if not re.fullmatch(r"[ \t]*-[ \t]+", text[line_start:start]) or (
            rest and not rest.startswith("#")):
        return None
    if len(seq.value) == 1:  # the list's last item: the key stays, with an empty list
        key_end = text.rfind(":", 0, line_start)
        return text[:key_end + 1] + " []" + text[key_end + 1:line_start] + text[line_end:]
    return text[:line_start] + text[line_end:]


def rewrite(doc: yamlfile.Document, text: str, old: str, new: str | None) -> str:
    """``text`` (the spec file ``doc`` was read from) with requirement ``old`` of its own
    `pip:` or `extras:` list replaced by ``new`` (None: removed); every other line and
    comment as it was. A layout it cannot edit in place is a LabError saying what to edit."""
    def by_hand(why: str) -> LabError:
        what = f"replace {old} with {new}" if new else f"remove {old}"
        return LabError(f"cannot edit {old} in place: {why}",
                        id="lock.cannot-edit", file=str(doc.path),
                        fix=f"{what} in {doc.path.name} by hand, then `labctl lock`")

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError:
        raise by_hand("it does not read as YAML") from None
    finally:
        loader.dispose()
    hit = _find(root, old)
    if hit is None:
        raise by_hand("it is not an item of this file's own pip: or extras: list")
    key, seq, i = hit
    if new is not None:
        item = seq.value[i]
        out: str | None = text[:item.start_mark.index] + _item(new) + text[item.end_mark.index:]
    else:
        out = _without(text, seq, i)
    if out is None:
        raise by_hand("its item is not on a `- ` line of its own")
    want = list(doc.data.get(key) or [])
    want = [x for x in want if x != old] if new is None else [new if x == old else x
                                                               for x in want]
    try:
        got = yamlfile.parse(doc.path, out).data
    except LabError:
        got = None
    # text surgery can slip (anchors, odd quoting): the file read back must differ only there
    if got != {**doc.data, key: want}:
        raise by_hand("an edit in place would change more than that line")
    return out


def apply(doc: yamlfile.Document, text: str, way: WayOut) -> str:
    """``text`` with every edit of ``way`` written in."""
    for old, new in way.edits:
        text = rewrite(yamlfile.parse(doc.path, text), text, old, new)
    return text


# --- labctl why ----------------------------------------------------------------------------


@dataclass
class Why:
    package: str
    version: str
    chains: list[list[str]]  # spec requirement, then package==version steps down to it
    constrained_by: list[str]  # the spec's own requirements that name it, then its requirers
    requirers: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"package": self.package, "version": self.version,
                "brought_in_by": [c[0] for c in self.chains], "chains": self.chains,
                "constrained_by": self.constrained_by, "required_by": self.requirers}


def _via(notes: Iterable[str]) -> tuple[list[str], bool]:
    """(the packages a pin's "# via" notes name, whether the spec itself asks for it)."""
    names: list[str] = []
    spec = False
    for n in notes:
        s = n.lstrip("#").strip()
        if s.startswith("via"):
            s = s[3:].strip()
        if not s:
            continue
        if s.startswith(("images/", "-r ", "-r")) and (".yaml" in s or ".txt" in s):
            spec = True
        elif s.startswith(("-c ", "-o ")):
            continue
        elif _NAME.fullmatch(s):
            names.append(canonicalize_name(s))
    return names, spec


def why(lock: LockFile, spec_requirements: Iterable[str], package: str) -> Why | None:
    """Which of the spec's requirements bring ``package`` in (the chains of the lock's
    "# via" notes from each down to it), and which constrain its version: the spec's
    own requirements that name it, and the packages that require it. None when the lock
    does not hold it."""
    target = canonicalize_name(package)
    versions: dict[str, str] = {}
    parents: dict[str, list[str]] = {}
    direct: set[str] = set()
    for pin in lock.pins():
        versions[pin.name] = pin.version  # a later section's version is the final one
        names, from_spec = _via(pin.notes)
        parents.setdefault(pin.name, [])
        parents[pin.name] += [n for n in names if n not in parents[pin.name]]
        if from_spec:
            direct.add(pin.name)
    if target not in versions:
        return None
    reqs = {canonicalize_name(_name(r)): r for r in spec_requirements if _name(r)}
    chains: list[list[str]] = []
    seen_tops: set[str] = set()
    queue: list[list[str]] = [[target]]
    visited = {target}
    while queue:  # breadth first: the shortest chain from each spec requirement
        path = queue.pop(0)
        top = path[0]
        if (top in direct or top in reqs) and top not in seen_tops:
            seen_tops.add(top)
            chains.append([reqs.get(top, top), *(f"{n} {versions.get(n, '?')}" for n in path)])
        for p in parents.get(top, []):
            if p not in visited:
                visited.add(p)
                queue.append([p, *path])
    own = [r for n, r in reqs.items() if n == target]
    requirers = [f"{p} {versions.get(p, '?')}" for p in parents.get(target, [])]
    return Why(target, versions[target], chains, own + requirers, requirers)
