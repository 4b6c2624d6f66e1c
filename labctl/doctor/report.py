"""What `labctl doctor` reports: the checks of doctor/checks, then, for --model, whether
each model fits each GPU (after the checks: their GPU probe is what it is measured on)."""

from __future__ import annotations

from labctl.data import hf
from labctl.doctor.checks import CHECKS
from labctl.doctor.context import Context
from labctl.doctor.registry import Result, run_checks, slug
from labctl.errors import LabError
from labctl.gpu import model_memory as mm


def diagnose(ctx: Context, models: tuple[str, ...] = ()) -> list[Result]:
    """Every finding of ``ctx``'s checks, then one per model of ``models`` and GPU."""
    results = run_checks(ctx, CHECKS)
    if models:
        results += model_results(ctx, models)
    return results


def model_results(ctx: Context, models: tuple[str, ...]) -> list[Result]:
    """`--model`: one finding per model and GPU, in the gpu area; a model that cannot be
    read is a failed finding, not an error that hides the other checks."""
    out = []
    for repo in models:
        try:
            if ctx.lab is None:
                raise ctx.lab_error or LabError("no lab folder", id="cli.no-lab-folder")
            ref, files = hf.model_files(ctx.lab, repo)
            size = mm.estimate(ref.repo_id, files.get("config.json"),
                               files.get("model.safetensors.index.json"),
                               files.get("model.safetensors"))
            found = mm.verdicts(size, ctx.probe.gpus)
        except LabError as e:
            found = [mm.Verdict("fail", repo, "; ".join([e.message, *e.details]), e.fix or "")]
        out += [Result(f"gpu.model-memory.{slug(repo)}.{slug(v.subject)}", "gpu",
                       f"model memory: {v.subject}", v.status, v.message, v.fix)
                for v in found]
    return out
