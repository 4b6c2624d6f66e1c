"""`labctl lock`, `freeze` and `diff` on the engine: resolve a spec's packages inside its
own base image and Python, read what a built image contains, and compare the two.

The pure parts (lock format, input hashes, diffs) live in labctl.lockfile.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labctl import resources
from labctl.config import lockfile
from labctl.config.lab import Lab
from labctl.config.lockfile import Change, LockFile
from labctl.config.spec import ImageSpec
from labctl.engine import Engine
from labctl.errors import LabError, advise
from labctl.image.build import BuildEvent, system_image
from labctl.image.layers import torch_requirements
from labctl.image.render import indexes, wheelhouse_folder

_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class LockResult:
    spec: str
    path: Path
    lock: LockFile
    previous: LockFile | None
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "spec": self.spec,
            "file": str(self.path),
            "packages": len(self.lock.pins()),
            "hashed": self.lock.hashed(),
            "first_lock": self.previous is None,
            "changes": [c.as_dict() for c in self.changes],
            "seconds": round(self.seconds, 1),
        }


def upgrade_arg(upgrade: bool, packages: list[str]) -> str:
    """LABCTL_UPGRADE for the resolver: "", ":all:" or the package names."""
    bad = [p for p in packages if not _PACKAGE.fullmatch(p)]
    if bad:
        raise LabError(f"--upgrade: {bad[0]!r} is not a package name",
                       id="lock.bad-package-name",
                       fix="name packages as on PyPI, e.g. --upgrade numpy")
    if packages:
        return " ".join(packages)
    return ":all:" if upgrade else ""


def lock_request(lab: Lab, names: tuple[str, ...], upgrade: bool, packages: tuple[str, ...]
                 ) -> tuple[list[ImageSpec], str]:
    """`labctl lock`'s specs (``names``, default all) and its LABCTL_UPGRADE, every spec
    and option checked before the first (slow) resolve starts. ``packages``: the
    --upgrade-package values, each repeatable or comma-separated."""
    specs = [lab.spec(n) for n in names or lab.spec_names()]
    wanted = [p.strip() for u in packages for p in u.split(",") if p.strip()]
    if upgrade and wanted:
        raise LabError("--upgrade moves every package; --upgrade-package only those named",
                       id="cli.upgrade-both", fix="use one of the two")
    return specs, upgrade_arg(upgrade, wanted)


def _inputs(spec: ImageSpec, previous: LockFile | None) -> dict[str, str]:
    files: dict[str, str] = {}
    if spec.torch:
        files["spec-torch.txt"] = "\n".join(torch_requirements(spec)) + "\n"
    for name, reqs in (("pip", spec.lab_packages), ("extras", spec.extras),
                       ("nodeps", spec.pip_nodeps)):
        if reqs:
            files[f"spec-{name}.txt"] = "\n".join(reqs) + "\n"
    if previous is not None:
        files["prefs.txt"] = lockfile.preferences(previous)
        files["prefs-nodeps.txt"] = lockfile.preferences(previous, nodeps=True)
        files["prefs-torch.txt"] = "".join(
            p.constraint() + "\n" for p in previous.sections.get("torch", []))
    files["resolve.sh"] = resources.tool("lock-resolve.sh")
    return files


def _environment(lab: Lab, spec: ImageSpec, upgrade: str, netrc: bool) -> dict[str, str]:
    args, _ = indexes(lab, spec)  # credential-free; the credentials are in /in/netrc
    env = {"LABCTL_UPGRADE": upgrade, "LABCTL_TORCH_INDEX": args.get("LABCTL_TORCH_INDEX", "")}
    if netrc:
        env["NETRC"] = "/in/netrc"
    net = lab.settings.network
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        value = getattr(net, name)
        if value:
            env[name] = env[name.upper()] = value
    return env


def lock(engine: Engine, lab: Lab, spec: ImageSpec, *, upgrade: str = "",
         say: Callable[[str], None] = lambda m: None) -> LockResult:
    """Resolve ``spec`` in its own base image and Python and write images/NAME.lock."""
    start = time.monotonic()
    path = lockfile.lock_path(spec, lab.images_dir)
    try:
        previous = lockfile.read_lock(path, spec.name)
    except LabError:
        previous = None  # unreadable: resolve from scratch and replace it
    if not (spec.torch or spec.lab_packages or spec.pip_nodeps or spec.extras):
        raise LabError(f"{spec.name} installs no Python packages: nothing to lock",
                       id="lock.nothing-to-lock", file=str(spec.source))

    def progress(ev: BuildEvent) -> None:
        if ev.kind == "step":
            say(f"resolver image: step {ev.step}/{ev.total}")

    tag = system_image(engine, lab, spec, progress)
    say(f"resolving {spec.name} with uv on Python {spec.python}")
    status, out, err = run_resolver(engine, lab, spec, tag, ResolverJob(
        _inputs(spec, previous), ["bash", "/in/resolve.sh"], upgrade=upgrade))
    if status != 0:
        raise explain_conflict(engine, lab, spec, _resolve_error(spec, err), err, say)
    try:
        new = lockfile.assemble(spec, lockfile.split_output(out))
    except ValueError as e:
        raise LabError(f"the resolver's output for {spec.name} was not understood: {e}",
                       id="lock.bad-resolver-output", details=out.splitlines()[-5:]) from None
    text = new.text()
    tmp_path = path.with_name(f".{path.name}.tmp")
    tmp_path.write_text(text, encoding="utf-8")
    tmp_path.replace(path)  # never a half-written lock
    changes = lockfile.diff_versions(previous.versions(), new.versions()) if previous else []
    return LockResult(spec.name, path, new, previous, changes, time.monotonic() - start)


@dataclass(frozen=True)
class ResolverJob:
    """One run of the resolver image: ``files`` at /in (read-only), then ``command``."""
    files: dict[str, str]
    command: list[str]
    label: str = "lock"  # the throw-away container's kind
    timeout: float = 1800
    upgrade: str = ""  # `labctl lock --upgrade`: all, or the packages named


def run_resolver(engine: Engine, lab: Lab, spec: ImageSpec, tag: str, job: ResolverJob
                 ) -> tuple[int, str, str]:
    """Run ``job`` in a throw-away container of the resolver image ``tag`` with the lab's
    indexes, credentials and wheelhouse: (status, stdout, stderr). `labctl lock` and the
    search for the ways out of a conflict."""
    files, command = job.files, job.command
    mounts: dict[str, str] = {}
    _, netrc = indexes(lab, spec)
    with tempfile.TemporaryDirectory(prefix="labctl-lock-") as tmp:
        # Readable by the container's user whatever the engine's user mapping (it runs
        # as root, or as you under rootless Docker); the credentials only by you.
        os.chmod(tmp, 0o755)
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
            os.chmod(Path(tmp) / name, 0o644)
        if netrc:
            fd = os.open(Path(tmp) / "netrc", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(netrc)
        mounts[tmp] = "/in"
        wheels = wheelhouse_folder(lab, spec)
        if wheels is not None and wheels.is_dir():
            mounts[str(wheels)] = "/wheelhouse"
        return engine.run_capture(
            tag, command, read_only_mounts=mounts,
            environment=_environment(lab, spec, job.upgrade, bool(netrc)), label=job.label,
            timeout=job.timeout,
        )


def explain_conflict(engine: Engine, lab: Lab, spec: ImageSpec, error: LabError, text: str,
                     say: Callable[[str], None] = lambda m: None) -> LabError:
    """``error`` (a failed lock or build of ``spec`` whose output is ``text``) with the ways
    out when its packages conflict (lock/conflicts.py); ``error`` itself otherwise, or when
    the search fails."""
    from labctl.lock import conflicts

    if not conflicts.is_conflict(text):
        return error
    try:
        def run(files: dict[str, str], command: list[str], timeout: float
                ) -> tuple[int, str, str]:
            return run_resolver(engine, lab, spec, system_image(engine, lab, spec),
                                ResolverJob(files, command, "conflicts", timeout))

        advice = conflicts.search(lab, spec, text, run, say=say)
    except LabError:
        return error
    # "resolving the packages of NAME failed" / "build of 'NAME' failed at step 9/12", and
    # a build's spec line ("from images/NAME.yaml:4 (pip)")
    where = error.message.split(": ")[0]
    if ", from " in error.message:
        where += ", from " + error.message.rsplit(", from ", 1)[1]
    return conflicts.ConflictError(advice, file=error.file, where=where)


def _resolve_error(spec: ImageSpec, stderr: str) -> LabError:
    lines = [line for line in stderr.splitlines() if line.strip()]
    found = advise(stderr, "resolve", spec=spec.name)
    fix = found.fix if found else \
        f"correct images/{spec.name}.yaml and run `labctl lock {spec.name}` again"
    what = f": {found.message}" if found else ""
    return LabError(f"resolving the packages of {spec.name} failed{what}",
                    id=found.id if found else "lock.resolve-failed",
                    file=str(spec.source) if spec.source else None,
                    details=lines[-15:], fix=fix)


# --- what a built image contains ----------------------------------------------------------


def freeze(engine: Engine, ref: str) -> dict[str, str]:
    """{name: version} of the Python packages installed in image ``ref``, read inside a
    throw-away container of it (no network, no mounts)."""
    if engine.image(ref) is None:
        raise LabError(f"no image {ref} in the engine",
                       id="lock.no-image",
                       fix="build it with `labctl build NAME`, or name an image from"
                           " `docker images`")
    status, out, err = engine.run_capture(
        ref, ["/bin/sh", "-c", resources.tool("freeze.sh")], network=False, timeout=300,
        label="freeze",
    )
    if status != 0:
        raise LabError(f"could not list the Python packages of {ref}",
                       id="lock.freeze-failed", details=err.strip().splitlines()[-5:],
                       fix="the image needs uv (labctl images) or python3 with pip")
    try:
        return lockfile.parse_package_list(out)
    except ValueError as e:
        raise LabError(f"could not list the Python packages of {ref}: {e}",
                       id="lock.freeze-failed") from None


@dataclass
class Source:
    """One side of `labctl diff`: a lock file, or an image (by ref or by spec name)."""

    label: str
    kind: str  # lock | image
    ref: str


def source(text: str, lab: Lab | None) -> Source:
    """A lock file path if such a file exists, else a spec name of the lab (its image),
    else an image reference."""
    path = Path(text)
    if path.is_file():
        return Source(text, "lock", str(path))
    if lab is not None and text in lab.spec_names():
        return Source(f"{text} ({lab.image_tag(text)})", "image", lab.image_tag(text))
    return Source(text, "image", text)


def packages(src: Source, engine_factory: Callable[[], Engine]) -> dict[str, str]:
    if src.kind == "lock":
        text = Path(src.ref).read_text(encoding="utf-8")
        if "# labctl-lock:" in text:
            return lockfile.parse_lock(text, src.ref).versions()
        try:  # any pinned requirements file, e.g. `pip freeze` output
            return {p.name: p.version for p in lockfile.parse_pins(text)}
        except ValueError as e:
            raise LabError(f"not a lock or pinned requirements file: {e}",
                           id="lock.not-a-lock-file", file=src.ref,
                           fix="name a labctl .lock file, an image, or a spec") from None
    return freeze(engine_factory(), src.ref)


@dataclass
class Comparison:
    """`labctl diff A B`: the packages that differ, and how many are the same."""

    a: Source
    b: Source
    changes: list[Change]
    same: int

    def as_dict(self) -> dict[str, object]:
        return {"a": self.a.ref, "b": self.b.ref, "same": self.same,
                "changes": [c.as_dict() for c in self.changes]}


def compare(a: str, b: str, lab: Lab | None, connect: Callable[[], Engine]) -> Comparison:
    """Compare the packages of ``a`` and ``b`` (lock files, specs' images or images). The
    engine is connected (``connect``) only when an image is read, and then once: two
    lock files compare without one."""
    engines: list[Engine] = []

    def once() -> Engine:
        if not engines:
            engines.append(connect())
        return engines[0]

    sa, sb = source(a, lab), source(b, lab)
    pa, pb = packages(sa, once), packages(sb, once)
    # a lock against an image: what only the image holds is "not locked", not "added"
    image_side = {("lock", "image"): "new", ("image", "lock"): "old"}.get((sa.kind, sb.kind))
    changes = lockfile.diff_versions(pa, pb, image_side)
    same = len(pa.keys() & pb.keys()) - sum(1 for c in changes if c.old and c.new)
    return Comparison(sa, sb, changes, same)
