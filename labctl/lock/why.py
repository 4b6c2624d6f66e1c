"""`labctl why NAME PACKAGE`: which of a spec's requirements bring a package in, read from
the spec's lock file alone (the resolver's "via" notes), so it needs no engine and no
network. The chains themselves are lock/conflicts.py's `why`."""

from __future__ import annotations

from dataclasses import dataclass

from labctl.config import lockfile
from labctl.config.lab import Lab
from labctl.config.spec import ImageSpec
from labctl.errors import LabError
from labctl.lock.conflicts import Why, why


@dataclass(frozen=True)
class WhyResult:
    """What brought ``found.package`` into spec ``spec``'s lock ``lock`` (lab-relative);
    ``stale``: the spec changed since that lock was written, so it may no longer hold."""

    spec: str
    lock: str
    stale: bool
    found: Why

    def as_dict(self) -> dict[str, object]:
        return {"spec": self.spec, "lock": self.lock, "stale": self.stale,
                **self.found.as_dict()}


def explain(lab: Lab, name: str, package: str) -> WhyResult:
    """Why spec ``name``'s lock holds ``package``; an error when there is no lock, or the
    lock does not hold it."""
    spec = lab.spec(name)
    path = lockfile.lock_path(spec, lab.images_dir)
    lock = lockfile.read_lock(path, name)
    if lock is None:
        raise LabError(f"{name} has no lock file: `why` reads what brought each package in"
                       " from it", id="cli.no-lock-file", file=lab.rel(path),
                       fix=f"run `labctl lock {name}` first")
    found = why(lock, _requirements(spec), package)
    if found is None:
        raise LabError(f"{package} is not in {lab.rel(path)}: {name} does not install it",
                       id="cli.not-in-lock", fix=f"`labctl add {name} {package}` adds it")
    return WhyResult(name, lab.rel(path), lockfile.state(spec, lock) == "stale", found)


def _requirements(spec: ImageSpec) -> list[str]:
    """The spec's own requirement lines: where each chain of "via" notes starts."""
    reqs = [*spec.lab_packages, *spec.pip_nodeps, *spec.extras]
    if spec.torch:
        reqs += [f"torch=={spec.torch.version}", *spec.torch.packages]
    return reqs
