"""What `labctl list` shows: each spec with the state of its image."""

from __future__ import annotations

from typing import Any

from labctl.errors import LabError
from labctl.lab import Lab


def list_specs(lab: Lab, engine: Any | None = None) -> list[dict[str, Any]]:
    """One row per spec; the image state is 'unknown' when no engine answers."""
    from labctl.build import state
    from labctl.engine import Engine
    from labctl.render import render

    if engine is None:
        try:
            engine = Engine.connect(timeout=5)
        except LabError:
            engine = None
    rows = []
    for name in lab.spec_names():
        spec = lab.spec(name)
        tag = lab.image_tag(name)
        ctx = render(lab, spec)
        rows.append({
            "name": name,
            "tag": tag,
            "state": state(engine, tag, ctx.digest) if engine else "unknown",
            "lock": ctx.lock_state,  # images/NAME.lock: locked / stale / none
            "hash": ctx.digest,
            "torch": f"{spec.torch.version} ({spec.torch.variant})" if spec.torch else None,
            "gpu": f"CUDA {spec.gpu.cuda}" if spec.gpu else None,
            "jupyter": bool(spec.jupyter and spec.jupyter.enabled),
            "description": spec.description,
            "extends": list(spec.chain[1:]),
        })
    return rows
