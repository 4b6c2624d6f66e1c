"""The lock policy `labctl build` applies: warn on a stale or missing lock; with
--locked (CI), fail naming each spec file and the fix."""

from __future__ import annotations

from collections.abc import Sequence

from labctl.config.lab import Lab
from labctl.errors import LabError
from labctl.image.render import BuildContext


def lock_policy(lab: Lab, contexts: Sequence[BuildContext], locked: bool) -> list[str]:
    """Warnings for `labctl build` about stale locks; with ``locked`` (CI), a LabError for
    any spec whose lock is missing or stale, naming each spec file and the fix."""
    warnings, problems = [], []
    for ctx in contexts:
        name = ctx.spec.name
        spec_file = lab.rel(ctx.spec.source) if ctx.spec.source else f"images/{name}.yaml"
        lock_file = spec_file.removesuffix(".yaml") + ".lock"
        if ctx.lock_state == "stale":
            msg = f"{lock_file} is stale: {spec_file} changed since it was locked"
            problems.append(msg)
            warnings.append(f"{msg}; building with the pins that still fit"
                            f" (run `labctl lock {name}` to lock it again)")
            warnings += [f"  {note}" for note in ctx.lock_notes]
        elif ctx.lock_state == "none":
            problems.append(f"{spec_file} has no lock file ({lock_file})")
    if locked and problems:
        names = " ".join(c.spec.name for c in contexts if c.lock_state != "locked")
        raise LabError(
            "--locked: every spec must have a current lock file",
            id="lock.not-current", details=problems,
            fix=f"run `labctl lock {names}` and commit the .lock files"
                " (or build without --locked)",
        )
    return warnings
