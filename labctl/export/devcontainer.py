"""`labctl devcontainer`: a devcontainer.json for VS Code's Dev Containers, from the run
plan of `labctl run NAME --user --src DIR`, merged into what the learner already has.

The lab starts as it does under `labctl run`: labctl's entrypoint runs (overrideCommand
false), remaps the image's `lab` user to the host uid/gid, then starts Jupyter as that
user; `updateRemoteUserUID` makes the Dev Containers CLI give `lab` the host uid/gid too,
and VS Code's server runs as `lab` in a HOME it can write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from labctl.runtime.plan import RunPlan

EXTENSIONS = ["ms-python.python", "ms-toolsai.jupyter"]
# The keys labctl writes; every other key of an existing file is the learner's, kept.
MANAGED = ("name", "image", "remoteUser", "containerUser", "updateRemoteUserUID",
           "overrideCommand", "workspaceMount", "workspaceFolder", "mounts", "containerEnv",
           "forwardPorts", "portsAttributes", "runArgs", "hostRequirements")
# Set by the Dev Containers CLI itself (updateRemoteUserUID), not by labctl's entrypoint.
_NOT_PASSED = ("LABCTL_UID", "LABCTL_GID")


def _mount(source: Path, target: str, read_only: bool) -> str:
    return f"source={source},target={target},type=bind" + (",readonly" if read_only else "")


def document(plan: RunPlan, src: Path, gpu: bool) -> dict[str, Any]:
    """The labctl-managed part of devcontainer.json for ``plan`` (a plan for ``src``)."""
    workspace = next((m for m in plan.mounts if m.source == src), None)
    others = [m for m in plan.mounts if m is not workspace]
    doc: dict[str, Any] = {
        "name": f"labctl {plan.spec}",
        "image": plan.image,
        # As under `labctl run`: a root host user (or rootless Docker) works as root.
        "remoteUser": "root" if plan.user_mode == "root" else "lab",
        "containerUser": "root",  # labctl's entrypoint starts as root and drops to lab
        "updateRemoteUserUID": True,
        "overrideCommand": False,  # the image's entrypoint and Jupyter run, as under labctl
        "workspaceMount": _mount(src, workspace.target, False) if workspace else "",
        "workspaceFolder": plan.workdir,
        "mounts": [_mount(m.source, m.target, m.read_only) for m in others],
        "containerEnv": {k: v for k, v in plan.env.items() if k not in _NOT_PASSED},
        "forwardPorts": sorted(plan.ports),
        "runArgs": [f"--shm-size={plan.shm_size}", "--security-opt=no-new-privileges"],
        "customizations": {"vscode": {"extensions": list(EXTENSIONS)}},
    }
    if plan.jupyter_port is not None:
        doc["portsAttributes"] = {str(plan.jupyter_port): {"label": "JupyterLab"}}
    if gpu:  # the CLI adds --gpus all only where it finds GPU support
        doc["hostRequirements"] = {"gpu": "optional"}
    return doc


def strip_jsonc(text: str) -> str:
    """devcontainer.json is JSON with comments and trailing commas."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def merge(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``new`` over ``old``: labctl's keys replaced, the learner's kept, the extensions a
    union. The merged document and what changed, in words."""
    merged = dict(old)
    changes: list[str] = []
    for key in MANAGED:
        if key in new and old.get(key) != new[key]:
            changes.append(f"{key}: {'set' if key not in old else 'updated'}")
            merged[key] = new[key]
        elif key not in new and key in old:
            changes.append(f"{key}: removed")
            del merged[key]
    vscode = merged.setdefault("customizations", {}).setdefault("vscode", {})
    have = list(vscode.get("extensions", []))
    added = [e for e in new["customizations"]["vscode"]["extensions"] if e not in have]
    if added:
        vscode["extensions"] = have + added
        changes.append(f"extensions: + {', '.join(added)}")
    return merged, changes


def write(path: Path, new: dict[str, Any]) -> list[str]:
    """Write ``new`` merged into the file at ``path``; what changed."""
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(strip_jsonc(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            from labctl.errors import LabError

            raise LabError(f"is not valid JSON (line {e.lineno}): {e.msg}", file=str(path),
                           fix="correct it, or move it away to have labctl write a new one"
                           ) from None
    merged, changes = merge(old, new)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.labctl-tmp")
    tmp.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return changes if old else ["written"]
