"""Room for builds: for each spec whose image is not built, what its build needs on the
engine's disk against what that disk has free: the same figures `labctl build` refuses
on."""

from __future__ import annotations

from labctl.doctor.checks.engine import SKIP_NO_ENGINE
from labctl.doctor.context import Context
from labctl.doctor.registry import Finding
from labctl.errors import LabError

FIX = ("`labctl prune` frees old images and build cache over the budget (`labctl df` shows"
       " what it would free), or lower build_cache_budget in labctl.yaml")


def build_room(ctx: Context) -> Finding | list[Finding]:
    if ctx.lab is None:
        return Finding("skip", "not in a lab folder: no specs to build")
    if ctx.engine is None:
        return SKIP_NO_ENGINE
    from labctl.image import disk

    out = []
    for name in ctx.spec_names():
        try:
            spec = ctx.spec(name)
        except LabError:
            continue  # spec.gpu reports a spec that does not load
        if ctx.engine.image(ctx.lab.image_tag(name)) is not None:
            continue  # built (`labctl build` sizes a rebuild from it)
        need = disk.estimate(ctx.engine, ctx.lab, name, spec.base)
        free = "an unknown amount free" if need.free is None else \
            f"{disk.human(need.free)} free"
        if need.bytes is None:
            out.append(Finding("ok", f"{need.basis}; the engine's disk has {free}",
                               subject=name, title=f"room to build {name}"))
        elif need.fits:
            out.append(Finding("ok", f"needs about {disk.human(need.bytes)} ({need.basis});"
                               f" {free}", subject=name, title=f"room to build {name}"))
        else:
            out.append(Finding("fail", f"needs about {disk.human(need.bytes)} ({need.basis}),"
                               f" the engine's disk ({need.root}) has {free}: the build"
                               " would be refused", FIX, subject=name,
                               title=f"room to build {name}"))
    return out or Finding("ok", "every spec's image is built")
