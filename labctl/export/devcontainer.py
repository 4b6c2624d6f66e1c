"""`labctl devcontainer`: a devcontainer.json for VS Code's Dev Containers, from the run
plan of `labctl run NAME --user --src DIR`, merged into what the learner already has.

The lab starts as it does under `labctl run`: labctl's entrypoint runs (overrideCommand
false), remaps the image's `lab` user to the host uid/gid, then starts Jupyter as that
user; `updateRemoteUserUID` makes the Dev Containers CLI give `lab` the host uid/gid too,
and VS Code's server runs as `lab` in a HOME it can write.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.config.safewrite import write_atomic
from labctl.config.spec import ImageSpec
from labctl.errors import LabError
from labctl.gpu.compat import gpu_use
from labctl.runtime.plan import RunPlan

EXTENSIONS = ["ms-python.python", "ms-toolsai.jupyter"]
# The keys labctl writes; every other key of an existing file is the learner's, kept.
MANAGED = ("name", "image", "remoteUser", "containerUser", "updateRemoteUserUID",
           "overrideCommand", "workspaceMount", "workspaceFolder", "mounts", "containerEnv",
           "forwardPorts", "portsAttributes", "runArgs", "hostRequirements")
# Set by the Dev Containers CLI itself (updateRemoteUserUID), not by labctl's entrypoint.
_NOT_PASSED = ("LABCTL_UID", "LABCTL_GID")


# docker's --mount value is CSV (key=value pairs, "quoted" fields): one of these in a path
# would end the field and add options of the path's choosing (`x,source=/etc`).
_CSV = (",", "=", '"', "\n", "\r")
MAX_BYTES = 1024 * 1024  # a devcontainer.json is a few KB
MAX_DEPTH = 64  # one nests about five levels


def _mount(source: Path, target: str, read_only: bool) -> str:
    """A --mount value; a path docker would read as more than a path is refused."""
    for what, value in (("folder", str(source)), ("container path", target)):
        bad = next((c for c in _CSV if c in value), None)
        if bad is not None:
            raise LabError(
                f"the {what} {value} holds {bad!r}, which docker's --mount (and so VS Code)"
                " would read as the start of another mount option",
                id="export.unsafe-mount-path",
                fix=f"rename the folder so that its path has no {', '.join(map(repr, _CSV))}"
                " (a lab cloned from someone else may be named so on purpose)")
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


def strip_jsonc(text: str, file: str = "devcontainer.json") -> str:
    """devcontainer.json is JSON with comments and trailing commas: both go, outside
    strings only (a string's "//", "/*", ",]" are the learner's). Line breaks are kept,
    so that JSON's line numbers are the file's."""
    out: list[str] = []
    comma: int | None = None  # where in out a comma waits that only blanks have followed
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])  # unterminated: the rest, which json then refuses
            comma, i = None, j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise LabError(f"a /* comment on line {text.count(chr(10), 0, i) + 1} is never"
                               " closed", id="export.devcontainer-invalid-json", file=file,
                               fix="close it with */")
            out.append("\n" * text.count("\n", i, end))
            i = end + 2
        else:
            if c == ",":
                comma = len(out)
            elif c in "]}":
                if comma is not None:
                    out[comma] = ""
                comma = None
            elif c not in " \t\r\n":
                comma = None
            out.append(c)
            i += 1
    return "".join(out)


class _NotJson(ValueError):
    """A number JSON does not have (NaN, Infinity, 1e400): it would not be written back."""


def _number(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotJson(text)
    return value


def _constant(text: str) -> Any:
    raise _NotJson(text)


def _depth(value: Any) -> int:
    """How deep ``value`` nests, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d <= MAX_DEPTH:
            if isinstance(v, dict):
                stack += [(x, d + 1) for x in v.values()]
            elif isinstance(v, list):
                stack += [(x, d + 1) for x in v]
    return deepest


def read(path: Path) -> dict[str, Any]:
    """The learner's devcontainer.json (JSONC) as a dict; every problem a LabError."""
    where = str(path)
    fix = "correct it, or move it away to have labctl write a new one"
    if path.is_symlink():  # a cloned project's link to ~/.docker/config.json: no merging
        raise LabError(f"is a link (to {os.readlink(path)}): labctl merges only a file of"
                       " the folder's own, lest it copy another file into the project",
                       id="export.devcontainer-link",
                       file=where, fix="replace the link by a copy of the file, or remove it")
    if path.stat().st_size > MAX_BYTES:
        raise LabError(f"is larger than {MAX_BYTES // 1024} KB",
                       id="export.devcontainer-too-large", file=where, fix=fix)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabError(f"is not UTF-8 text (byte {e.start})",
                       id="export.devcontainer-not-utf8", file=where,
                       fix="save it as UTF-8, or " + fix) from None
    try:
        doc = json.loads(strip_jsonc(text, where), parse_constant=_constant,
                         parse_float=_number)
    except json.JSONDecodeError as e:
        raise LabError(f"is not valid JSON (line {e.lineno}): {e.msg}",
                       id="export.devcontainer-invalid-json", file=where,
                       fix=fix) from None
    except _NotJson as e:
        raise LabError(f"holds {e}, a number JSON does not have (NaN, Infinity or too large)",
                       id="export.devcontainer-bad-number", file=where, fix=fix) from None
    except ValueError as e:  # an integer of thousands of digits
        raise LabError(f"holds a number labctl cannot read ({e})",
                       id="export.devcontainer-bad-number", file=where,
                       fix=fix) from None
    except RecursionError:
        raise LabError("is nested too deeply",
                       id="export.devcontainer-too-deep", file=where, fix=fix) from None
    if not isinstance(doc, dict):
        raise LabError(f"must be a JSON object {{...}}, not {type(doc).__name__}",
                       id="export.devcontainer-not-an-object", file=where,
                       fix=fix)
    if _depth(doc) > MAX_DEPTH:
        raise LabError(f"is nested too deeply (more than {MAX_DEPTH} levels)",
                       id="export.devcontainer-too-deep", file=where,
                       fix=fix)
    custom = doc.get("customizations", {})
    vscode = custom.get("vscode", {}) if isinstance(custom, dict) else None
    for key, value, kind in (("customizations", custom, dict),
                             ("customizations.vscode", vscode, dict),
                             ("customizations.vscode.extensions",
                              (vscode or {}).get("extensions", []), list)):
        if not isinstance(value, kind):
            raise LabError(f"{key} must be a JSON {'object' if kind is dict else 'array'}",
                           id="export.devcontainer-bad-key-type",
                           file=where, fix=f"correct {key}, or move the file away to have"
                           " labctl write a new one")
    return doc


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
    """Write ``new`` merged into the file at ``path``; what changed. The file is replaced
    by a new one (read() refuses a link at ``path``)."""
    old = read(path) if path.exists() or path.is_symlink() else {}
    merged, changes = merge(old, new)
    text = json.dumps(merged, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\ud800) of the learner's: kept escaped
        data = (json.dumps(merged, indent=2, allow_nan=False) + "\n").encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return changes if old else ["written"]


def file_for(folder: Path, name: str, single: bool) -> Path:
    """Where lab ``name``'s devcontainer.json goes in ``folder``: .devcontainer/NAME/ (one
    per lab, VS Code offers each), or .devcontainer/ itself (``single``: VS Code's
    default). Refused where a link (a cloned project's) leads it outside the folder."""
    path = folder / ".devcontainer" / ("devcontainer.json" if single else
                                       f"{name}/devcontainer.json")
    where = path.parent.resolve()
    if where != folder and folder not in where.parents:
        raise LabError(f"{path.parent} leads outside {folder} (to {where})",
                       id="cli.link-outside",
                       fix=f"remove the link {path.parent.relative_to(folder).parts[0]};"
                       " labctl writes devcontainer.json inside the folder VS Code opens")
    return path


@dataclass(frozen=True)
class Written:
    """What `labctl devcontainer` wrote."""

    file: Path
    changes: list[str]  # in words; empty: the file was as it is
    image: str
    workspace: str  # where VS Code opens the folder, in the container
    gpu: bool  # the GPU where the host has one

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "changes": self.changes, "image": self.image,
                "workspace": self.workspace, "gpu": self.gpu}


def export(plan: RunPlan, spec: ImageSpec, folder: Path, single: bool,
           gpu_mode: Callable[[], str], make_dirs: Callable[[list[Path]], object]
           ) -> Written:
    """Write the devcontainer.json of ``plan`` (a run plan for ``folder``, the folder VS
    Code opens) into ``folder``, merged into the learner's. ``gpu_mode`` is the engine's
    (asked only for a lab that can use a GPU); ``make_dirs`` makes the lab's folders as
    the learner, before VS Code starts the lab (the engine would make them as root)."""
    gpu = gpu_use(spec) != "no" and gpu_mode() != "none"
    doc = document(plan, folder, gpu)  # refuses a path docker would misread, first
    path = file_for(folder, spec.name, single)
    make_dirs(plan.host_dirs)
    return Written(path, write(path, doc), plan.image, plan.workdir, gpu)
