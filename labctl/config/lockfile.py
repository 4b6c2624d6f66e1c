"""Lock files (images/NAME.lock): parse, write, hash the spec inputs, diff package maps.

Pure: no engine, no network. A lock file is a valid requirements file (uv's `name==version`
lines with `--hash` options and `# via` notes) split into the spec's install layers, under a
header that records the hash of the spec inputs it was resolved from, so a spec edited
after locking is detected ("stale") without resolving anything.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from labctl.config.spec import ImageSpec
from labctl.errors import LabError

FORMAT = "1"
# The spec keys whose packages a lock pins, in the order the Dockerfile installs them.
SECTIONS = ("torch", "pip", "pip_nodeps", "extras")
SECTION_NOTES = {
    "torch": "torch, its packages and what they need (the torch layer)",
    "pip": "the spec's pip packages and what they need beyond the torch layer",
    "pip_nodeps": "installed with --no-deps: these pins only, none of their dependencies",
    "extras": "the extras and what only they need",
}
# The layers after torch are installed with the pins of every layer before them too, so an
# upgrade of an installed package by a later layer is pinned as well.
LAYER_PINS = {
    "torch": ("torch",),
    "pip": ("torch", "pip"),
    "pip_nodeps": ("pip_nodeps",),
    "extras": ("torch", "pip", "extras"),
}
STATES = ("locked", "stale", "none")
_SECTION = re.compile(r"^# \[(torch|pip|pip_nodeps|extras)\]")
_HEADER = re.compile(r"^# ([a-z-]+): (.*)$")
_MARKER = re.compile(r"^### labctl-lock:([a-z_]+)$")
_VIA_FILE = re.compile(r"-r spec-(torch|pip|nodeps|extras)\.txt")


@dataclass(frozen=True)
class Pin:
    """One locked package: ``req`` is the requirement as the resolver wrote it."""

    name: str  # canonical (PEP 503) name
    version: str  # the pinned version, or "@ URL" for a direct reference
    req: str
    hashes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # the resolver's "# via" lines

    def lines(self) -> list[str]:
        """The pin as lock-file lines: requirement, one hash a line, then the notes."""
        if not self.hashes:
            out = [self.req]
        else:
            out = [f"{self.req} \\"]
            out += [f"    --hash={h} \\" for h in self.hashes[:-1]]
            out.append(f"    --hash={self.hashes[-1]}")
        return out + [f"    {n}" for n in self.notes]

    def constraint(self) -> str:
        """The pin on one line for a constraints file (uv checks the hashes of what it
        downloads against a constraint's hashes)."""
        return " ".join([self.req, *(f"--hash={h}" for h in self.hashes)])


@dataclass
class LockFile:
    spec: str
    inputs: str  # inputs_hash() of the spec it was resolved from
    torch_inputs: str  # torch_inputs_hash() of that spec
    python: str = ""  # e.g. "3.11.2 (x86_64, glibc 2.36)"
    resolver: str = ""  # e.g. "uv 0.13.9"
    sections: dict[str, list[Pin]] = field(default_factory=dict)

    def pins(self) -> list[Pin]:
        return [p for s in SECTIONS for p in self.sections.get(s, [])]

    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.pins()}

    def hashed(self) -> int:
        return sum(1 for p in self.pins() if p.hashes)

    def text(self) -> str:
        name = self.spec
        out = [
            f"# labctl lock file for images/{name}.yaml: the exact versions `labctl build"
            f" {name}` installs.",
            f"# Written by `labctl lock {name}`; do not edit. Move versions forward with"
            f" `labctl lock {name} --upgrade` (or --upgrade-package PACKAGE).",
            f"# labctl-lock: {FORMAT}",
            f"# inputs: {self.inputs}",
            f"# torch-inputs: {self.torch_inputs}",
            f"# python: {self.python}",
            f"# resolver: {self.resolver}",
        ]
        for section in SECTIONS:
            pins = self.sections.get(section) or []
            if not pins:
                continue
            out += ["", f"# [{section}] {SECTION_NOTES[section]}"]
            for pin in pins:
                out += pin.lines()
        return "\n".join(out) + "\n"


# --- the spec inputs a lock depends on ----------------------------------------------------


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _torch_inputs(spec: ImageSpec) -> dict[str, object]:
    return {
        "python": spec.python,
        "torch": spec.torch.model_dump(mode="json") if spec.torch else None,
        "index_url": spec.index_url,
        "extra_index_urls": list(spec.extra_index_urls),
    }


def inputs_hash(spec: ImageSpec) -> str:
    """What a resolution depends on in the spec: Python, torch, the package lists and the
    spec's indexes. The lab's own index setting (often a mirror of PyPI serving the same
    files) is left out, so a lock made behind one mirror stays valid behind another."""
    return _digest({
        **_torch_inputs(spec),
        "pip": spec.lab_packages,
        "pip_nodeps": list(spec.pip_nodeps),
        "extras": list(spec.extras),
    })


def torch_inputs_hash(spec: ImageSpec) -> str:
    """The inputs of the torch layer alone: while they are unchanged, a stale lock's torch
    pins still hold, and the torch layer stays cached."""
    return _digest(_torch_inputs(spec))


def lock_path(spec: ImageSpec, images_dir: Path) -> Path:
    """images/NAME.lock, beside the spec file."""
    if spec.source is not None:
        return spec.source.with_name(f"{spec.name}.lock")
    return images_dir / f"{spec.name}.lock"


# --- parsing ------------------------------------------------------------------------------


def _logical_lines(text: str) -> Iterable[tuple[str, bool]]:
    """(line, is_indented_comment) with backslash continuations joined."""
    buf = ""
    for raw in text.splitlines():
        if buf:
            buf += " " + raw.strip().removesuffix("\\").strip()
            if not raw.rstrip().endswith("\\"):
                yield buf, False
                buf = ""
            continue
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            yield raw.rstrip(), raw[:1].isspace()
        elif stripped.endswith("\\"):
            buf = stripped.removesuffix("\\").strip()
        else:
            yield stripped, False
    if buf:
        yield buf, False


def parse_pin(line: str) -> Pin:
    """``name==version --hash=...`` (or ``name @ URL``) into a Pin."""
    req_text, *options = re.split(r"\s+(?=--)", line.strip())
    hashes = tuple(o.split("=", 1)[1] for o in options if o.startswith("--hash="))
    try:
        req = Requirement(req_text)
    except InvalidRequirement as e:
        raise ValueError(f"not a requirement: {req_text!r} ({e})") from None
    exact = [s for s in req.specifier if s.operator in ("==", "===")]
    if req.url:
        version = f"@ {req.url}"
    elif len(exact) == 1 and "*" not in exact[0].version:
        version = exact[0].version
    else:
        raise ValueError(f"{req_text!r} is not pinned to one version")
    return Pin(canonicalize_name(req.name), version, req_text, hashes)


def parse_pins(text: str) -> list[Pin]:
    """The pins of a requirements file such as uv pip compile writes, with their notes."""
    pins: list[Pin] = []
    for line, indented in _logical_lines(text):
        if line.lstrip().startswith("#"):
            if indented and pins:
                last = pins[-1]
                pins[-1] = Pin(last.name, last.version, last.req, last.hashes,
                               (*last.notes, line.strip()))
            continue
        if line.startswith("-"):  # --index-url and similar options
            continue
        pins.append(parse_pin(line))
    return pins


def parse_lock(text: str, path: Path | str, spec: str = "") -> LockFile:
    """A lock file's header and sections; a LabError naming the file if it is not one."""
    header: dict[str, str] = {}
    sections: dict[str, list[Pin]] = {s: [] for s in SECTIONS}
    current: str | None = None
    chunk: list[str] = []

    def flush() -> None:
        if current is not None and chunk:
            sections[current] += parse_pins("\n".join(chunk))

    try:
        for raw in text.splitlines():
            if m := _SECTION.match(raw):
                flush()
                current, chunk = m[1], []
            elif current is None:
                if (m := _HEADER.match(raw)) is not None:
                    header[m[1]] = m[2].strip()
                elif raw.strip() and not raw.startswith("#"):
                    raise ValueError(f"a package line before any [section]: {raw.strip()!r}")
            else:
                chunk.append(raw)
        flush()
    except ValueError as e:
        raise _bad_lock(path, spec, str(e)) from None
    if header.get("labctl-lock") != FORMAT or "inputs" not in header:
        raise _bad_lock(path, spec, "no `# labctl-lock: 1` / `# inputs:` header")
    return LockFile(
        spec=spec or Path(path).stem,
        inputs=header["inputs"],
        torch_inputs=header.get("torch-inputs", ""),
        python=header.get("python", ""),
        resolver=header.get("resolver", ""),
        sections=sections,
    )


def _bad_lock(path: Path | str, spec: str, why: str) -> LabError:
    name = spec or Path(path).stem
    return LabError(
        f"not a labctl lock file: {why}",
        id="lockfile.invalid",
        file=str(path),
        fix=f"write it again with `labctl lock {name}` (or delete it to build unlocked)",
    )


def read_lock(path: Path, spec: str = "") -> LockFile | None:
    """The lock file at ``path``, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse_lock(text, path, spec)


def state(spec: ImageSpec, lock: LockFile | None) -> str:
    """locked (made from these inputs) / stale (the spec changed since) / none."""
    if lock is None:
        return "none"
    return "locked" if lock.inputs == inputs_hash(spec) else "stale"


# --- a lock written from the resolver's output --------------------------------------------


def split_output(stdout: str) -> dict[str, str]:
    """The resolver container prints each result after a `### labctl-lock:NAME` line."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if m := _MARKER.match(line.strip()):
            current = parts.setdefault(m[1], [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v) + "\n" for k, v in parts.items()}


def assemble(spec: ImageSpec, outputs: Mapping[str, str]) -> LockFile:
    """A LockFile from the resolver's outputs: ``torchfull`` (the torch requirements resolved
    alone, with hashes: the torch layer, the same for every spec with that torch), ``full``
    (torch + pip + extras resolved together, with hashes), ``pip`` (what the pip layer
    installs when held to the full resolution: names only), ``nodeps`` (pip_nodeps,
    resolved with --no-deps) and ``meta`` (python / resolver lines). A package the later
    layers move (d2l's numpy<2) appears in the torch section and again, at its final
    version, in a later one."""
    spec_file = f"images/{spec.name}.yaml"
    keys = {"torch": "torch", "pip": "pip", "nodeps": "pip_nodeps", "extras": "extras"}

    def renamed(pins: list[Pin]) -> list[Pin]:
        def note(n: str) -> str:
            return _VIA_FILE.sub(lambda m: f"{spec_file} ({keys[m[1]]})", n)

        return [Pin(p.name, p.version, p.req, p.hashes, tuple(note(n) for n in p.notes))
                for p in pins]

    full = renamed(parse_pins(outputs.get("full", "")))
    torch = renamed(parse_pins(outputs.get("torchfull", "")))
    in_torch = {(p.name, p.version) for p in torch}
    # Later sections hold what the torch layer does not already install at that version.
    later = [p for p in full if (p.name, p.version) not in in_torch]
    pip_names = {p.name for p in parse_pins(outputs.get("pip", ""))}
    meta = dict(
        line.split(": ", 1) for line in outputs.get("meta", "").splitlines() if ": " in line
    )
    return LockFile(
        spec=spec.name,
        inputs=inputs_hash(spec),
        torch_inputs=torch_inputs_hash(spec),
        python=meta.get("python", ""),
        resolver=meta.get("resolver", ""),
        sections={
            "torch": torch,
            "pip": [p for p in later if p.name in pip_names],
            "pip_nodeps": renamed(parse_pins(outputs.get("nodeps", ""))),
            "extras": [p for p in later if p.name not in pip_names],
        },
    )


def preferences(lock: LockFile, nodeps: bool = False) -> str:
    """A lock's pins as the resolver's starting point (kept unless an input or --upgrade
    asks otherwise)."""
    names = ("pip_nodeps",) if nodeps else ("torch", "pip", "extras")
    pins = {p.name: p for s in names for p in lock.sections.get(s, [])}
    return "".join(p.constraint() + "\n" for p in pins.values())


# --- a lock applied to a build ------------------------------------------------------------


def _spec_requirements(spec: ImageSpec) -> list[str]:
    reqs = [*spec.lab_packages, *spec.pip_nodeps, *spec.extras]
    if spec.torch:
        reqs += [f"torch=={spec.torch.version}", *spec.torch.packages]
    return reqs


def usable_pins(spec: ImageSpec, lock: LockFile) -> tuple[dict[str, list[Pin]], list[str]]:
    """The pins of each section that still apply to ``spec``, and notes on what was left
    out. A current lock applies whole. A stale one keeps the pins that still fit, so that
    adding one package reinstalls nothing else: the torch section only while the torch
    inputs are unchanged, and no pin that a requirement of the spec now excludes."""
    sections = {s: list(lock.sections.get(s, [])) for s in SECTIONS}
    notes: list[str] = []
    if lock.inputs == inputs_hash(spec):
        return sections, notes
    locked_py = ".".join(lock.python.split()[0].split(".")[:2]) if lock.python else ""
    if locked_py and locked_py != spec.python:
        notes.append(f"the lock is for Python {locked_py}, the spec asks for {spec.python}:"
                     " the lock is not used")
        return {s: [] for s in SECTIONS}, notes
    if lock.torch_inputs != torch_inputs_hash(spec) and sections["torch"]:
        notes.append("torch changed: the torch section of the lock is not used")
        sections["torch"] = []
    # The torch section answers to the torch requirements only: a later layer may move one
    # of its packages on purpose (numpy<2), and then the later section carries that pin.
    torch_reqs = [f"torch=={spec.torch.version}", *spec.torch.packages] if spec.torch else []
    excluded: dict[tuple[str, str], str] = {}
    for text in _spec_requirements(spec):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        for s in SECTIONS:
            if s == "torch" and text not in torch_reqs:
                continue
            for pin in (p for p in sections[s] if p.name == name):
                if req.url or pin.version.startswith("@") or not req.specifier.contains(
                    pin.version, prereleases=True
                ):
                    excluded[(s, name)] = f"{pin.name}=={pin.version} (the spec asks for {text})"
    for s in SECTIONS:
        sections[s] = [p for p in sections[s] if (s, p.name) not in excluded]
    notes += [f"not pinned: {why}" for why in dict.fromkeys(excluded.values())]
    return sections, notes


def layer_constraints(sections: Mapping[str, list[Pin]]) -> dict[str, bytes]:
    """For each install layer, the constraints file that holds it to the lock."""
    out: dict[str, bytes] = {}
    for layer, names in LAYER_PINS.items():
        # A later section's pin of a name replaces an earlier one (torch's numpy 2 -> 1.26).
        pins = {p.name: p for s in names for p in sections.get(s, [])}
        lines = [p.constraint() for p in pins.values()]
        if lines:
            out[layer] = ("\n".join(lines) + "\n").encode()
    return out


# --- comparing two package sets -----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    package: str
    old: str | None
    new: str | None
    kind: str  # upgraded / downgraded / changed / added / removed / not locked

    def as_dict(self) -> dict[str, str | None]:
        return {"package": self.package, "old": self.old, "new": self.new, "change": self.kind}


def _kind(old: str, new: str) -> str:
    try:
        return "upgraded" if Version(new) > Version(old) else (
            "downgraded" if Version(new) < Version(old) else "changed")
    except InvalidVersion:
        return "changed"


def diff_versions(old: Mapping[str, str], new: Mapping[str, str],
                  image_side: str | None = None) -> list[Change]:
    """Package-by-package differences between two {name: version} maps, by name.

    When an image is compared with a lock, ``image_side`` ("old" or "new") names the image:
    what only the image holds is "not locked" (the venv's own pip, setuptools and wheel, or
    something installed by hand) rather than added or removed by a build."""
    a = {canonicalize_name(k): v for k, v in old.items()}
    b = {canonicalize_name(k): v for k, v in new.items()}
    out = []
    for name in sorted(a.keys() | b.keys()):
        va, vb = a.get(name), b.get(name)
        if va == vb:
            continue
        if va is None:
            out.append(Change(name, None, vb, "not locked" if image_side == "new" else "added"))
        elif vb is None:
            out.append(Change(name, va, None,
                              "not locked" if image_side == "old" else "removed"))
        else:
            out.append(Change(name, va, vb, _kind(va, vb)))
    return out


def parse_package_list(text: str) -> dict[str, str]:
    """`uv pip list --format json` / `pip list --format=json` output as {name: version}."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a JSON package list: {e}") from None
    if not isinstance(rows, list):
        raise ValueError("not a JSON package list")
    return {canonicalize_name(r["name"]): str(r["version"]) for r in rows}
