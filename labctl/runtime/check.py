"""`labctl check`: run the workloads a spec declares inside its built image, as the host
user, on the lab's volumes, and report pass/fail per check."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from labctl.config.lab import Lab
from labctl.config.spec import CheckSpec, ImageSpec, compat_items
from labctl.engine import Engine
from labctl.errors import LabError
from labctl.runtime import remote
from labctl.runtime.plan import Mount, RunRequest
from labctl.runtime.run import Leftovers, create, make_plan, teardown

SPEC_DIR = "/opt/labctl/spec"  # the lab's images/ folder, read-only, for check scripts


@dataclass
class CheckResult:
    name: str
    status: str  # pass | fail | timeout
    seconds: float
    output: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CompatRow:
    """One book-compatibility item a lab runs with: what it serves, and how (its pip
    packages, or a shim), so a learner sees what LABCTL_COMPAT=off would take away."""

    item: str
    serves: list[str]
    how: str


@dataclass(frozen=True)
class CheckReport:
    """`labctl check NAME`: each check's result, and the lab's compatibility items."""

    spec: str
    results: list[CheckResult]
    compat: list[CompatRow]

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status != "pass"]


def check_lab(engine: Engine, lab: Lab, name: str, only: list[str] | None = None,
              gpus: str = "auto", on_start: Callable[[str], None] = lambda n: None
              ) -> CheckReport:
    """Run spec ``name``'s checks (``only``: those named) and say what it is checked with."""
    results = run_checks(engine, lab, name, only, gpus, on_start)
    return CheckReport(name, results, compat_rows(lab.spec(name)))


def compat_rows(spec: ImageSpec) -> list[CompatRow]:
    """The spec's compatibility items as tables/compat.yaml describes them (read only when
    the spec names any)."""
    items = compat_items() if spec.compat else {}
    return [CompatRow(c, list(items[c].serves), ", ".join(items[c].pip) or f"shim {items[c].shim}")
            for c in spec.compat]


def command_for(check: CheckSpec) -> list[str]:
    if check.run:
        return ["bash", "-c", check.run]
    assert check.script
    runner = "python" if check.script.endswith(".py") else "bash"
    return [runner, f"{SPEC_DIR}/{check.script}"]


def run_checks(engine: Engine, lab: Lab, name: str, only: list[str] | None = None,
               gpus: str = "auto", on_start: Callable[[str], None] = lambda n: None
               ) -> list[CheckResult]:
    spec = lab.spec(name)
    checks = [c for c in spec.checks if not only or c.name in only]
    if not checks:
        raise LabError(f"spec '{name}' declares no checks" + (f" named {only}" if only else ""),
                       id="run.no-checks",
                       file=spec.file_of("checks"), fix="add a checks: list to the spec")
    results = []
    for check in checks:
        on_start(check.name)
        # Each check works in a scratch source folder of its own inside the lab, so the
        # learner's work/ folder is never touched; the scratch folder is removed after.
        scratch = Path(tempfile.mkdtemp(prefix=f"check-{check.name}-", dir=lab.state_dir()))
        for sub in spec.src_volumes.values():  # labctl's own folder: the book's ../data
            (scratch / sub).mkdir()
        try:
            plan = make_plan(engine, lab, name, RunRequest(
                user=True, srcs=(str(scratch),), command=tuple(command_for(check)), gpus=gpus,
                sync=not engine.is_local()))
            if plan.remote is not None:  # on another machine: the scripts are copied there
                remote.copy_in(plan, lab.images_dir, SPEC_DIR)
            else:
                plan.mounts.append(Mount(lab.images_dir, SPEC_DIR, read_only=True))
            plan.env.setdefault("MPLBACKEND", "Agg")
            # Its own name: two `labctl check` of one lab at once must not collide.
            plan.name = plan.name_base = f"labctl-{spec.name}-check-{secrets.token_hex(3)}"
            # Offline for real: what a lab needs must already be in the image or volumes.
            plan.network, plan.ports = "none", {}
            container = create(engine, plan, foreground=True)
            start = time.monotonic()
            try:
                code, out = engine.run_to_end(container, timeout=check.timeout)
            finally:
                teardown(engine, container, Leftovers.of_plan(plan), lambda m: None)
            status = "timeout" if code is None else "pass" if code == 0 else "fail"
            results.append(CheckResult(check.name, status, time.monotonic() - start, out))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return results
