"""Doctor's findings and how checks are run: small checks, each turning the machine's
state into findings (the explicit list is doctor/checks/__init__.py).

Why this shape: each check stays a few lines with one job, output and exit code are
decided in one place, and a crashing check becomes a finding instead of a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from labctl.errors import LabError

if TYPE_CHECKING:
    from labctl.doctor.context import Context

Status = Literal["ok", "warn", "fail", "skip"]
AREAS = ("engine", "gpu", "gpu-in-containers", "lab", "spec", "image")


@dataclass(frozen=True)
class Finding:
    """What one check found. ``subject`` names the thing a repeated check looked at (a GPU,
    a volume, a spec) and extends the id; ``title`` overrides the check's title."""

    status: Status
    message: str
    fix: str = ""
    subject: str = ""
    title: str = ""


@dataclass(frozen=True)
class Result:
    """A finding with its check's identity: one row of the table, one object of --json."""

    id: str
    area: str
    title: str
    status: Status
    message: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


CheckFn = Callable[["Context"], "Finding | list[Finding]"]


@dataclass(frozen=True)
class Check:
    id: str
    area: str
    title: str
    fn: CheckFn
    when: Callable[[Context], bool] | None = None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-")


def run_checks(ctx: Context, checks: Iterable[Check]) -> list[Result]:
    """Run every applicable check; results ordered by area, then the list's order."""
    results: list[Result] = []
    for c in checks:
        if c.when is not None and not c.when(ctx):
            continue
        try:
            out = c.fn(ctx)
        except LabError as e:
            out = Finding("fail", e.message, e.fix or "")
        except Exception as e:  # a bug in one check must not hide the others
            out = Finding("fail", f"this check crashed: {type(e).__name__}: {e}",
                          "report it as a labctl bug (labctl doctor --json shows the details)")
        for f in out if isinstance(out, list) else [out]:
            results.append(Result(
                id=f"{c.id}.{slug(f.subject)}" if f.subject else c.id,
                area=c.area,
                title=f.title or c.title,
                status=f.status,
                message=f.message,
                fix=f.fix,
            ))
    order = {a: i for i, a in enumerate(AREAS)}
    return sorted(results, key=lambda r: order[r.area])  # stable: keeps check order


def exit_code(results: list[Result]) -> int:
    return 1 if any(r.status == "fail" for r in results) else 0
