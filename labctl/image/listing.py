"""What `labctl list` shows: each spec with the state of its image."""

from __future__ import annotations

from typing import Any

from labctl import labels
from labctl.config.lab import Lab
from labctl.config.spec import GpuSpec, ImageSpec
from labctl.engine import Engine
from labctl.errors import LabError
from labctl.gpu.compat import gpu_use
from labctl.image.build import state_of, torch_label
from labctl.image.render import render


def gpu_column(spec: ImageSpec) -> str | None:
    use = gpu_use(spec)
    if isinstance(spec.gpu, GpuSpec):
        return f"CUDA {spec.gpu.cuda}" + (" (required)" if use == "required" else "")
    return "if present" if use == "optional" else None


def torch_column(spec: ImageSpec) -> str | None:
    """The spec's torch: "2.10.0 (cu128)", "2.10.0 (cpu, auto)" where auto chose."""
    if spec.torch is None:
        return None
    return f"{spec.torch.version} ({spec.torch.variant}{', auto' if spec.torch.by_auto else ''})"


def image_torch(held: dict[str, str], spec: ImageSpec, now: str) -> str | None:
    """The torch wheel a built image holds: its label; for an image built before labctl
    wrote one, the spec's when the image is current (its hash covers the wheel)."""
    if labels.TORCH in held:
        return held[labels.TORCH]
    return torch_label(spec.torch) if now == "current" and spec.torch else None


def list_specs(lab: Lab, engine: Engine | None = None) -> list[dict[str, Any]]:
    """One row per spec; the image state is 'unknown' when no engine answers."""
    if engine is None:
        try:
            engine = Engine.connect(timeout=5)
        except LabError:
            engine = None
    rows: list[dict[str, Any]] = []
    for name in lab.spec_names():
        tag = lab.image_tag(name)
        try:
            spec = lab.spec(name)
            ctx = render(lab, spec)
        except LabError as e:  # one broken spec must not hide the others
            rows.append({"name": name, "tag": tag, "state": "invalid", "lock": "-",
                         "hash": None, "torch": None, "image_torch": None, "gpu": None,
                         "jupyter": False,
                         "description": str(e).splitlines()[0], "extends": [],
                         "error": str(e)})
            continue
        held = engine.image_labels(tag) if engine else None
        now = state_of(held, ctx.digest) if engine else "unknown"
        rows.append({
            "name": name,
            "tag": tag,
            "state": now,
            "lock": ctx.lock_state,  # images/NAME.lock: locked / stale / none
            "hash": ctx.digest,
            "torch": torch_column(spec),
            "image_torch": image_torch(held or {}, spec, now),
            "gpu": gpu_column(spec),
            "jupyter": bool(spec.jupyter and spec.jupyter.enabled),
            "description": spec.description,
            "extends": list(spec.chain[1:]),
        })
    return rows
