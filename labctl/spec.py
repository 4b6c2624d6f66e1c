"""Image specs: load YAML, resolve ``extends``, validate with pydantic -> ImageSpec.

Errors name the file, the key path, what is wrong and how to fix it (LabError).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from labctl import validators as v
from labctl.errors import LabError

AptName = Annotated[str, AfterValidator(v.apt_package)]
Req = Annotated[str, AfterValidator(v.requirement)]
ImageRef = Annotated[str, AfterValidator(v.image_ref)]
EnvName = Annotated[str, AfterValidator(v.env_name)]
Quoted = Annotated[str, AfterValidator(v.quoted_value)]
Line = Annotated[str, AfterValidator(v.no_control)]
AbsPath = Annotated[str, AfterValidator(v.abs_path)]
Url = Annotated[str, AfterValidator(v.url)]
PyVersion = Annotated[str, AfterValidator(v.python_version)]
Version = Annotated[str, AfterValidator(v.version)]
Variant = Annotated[str, AfterValidator(v.torch_variant)]
Name = Annotated[str, AfterValidator(v.name)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TorchSpec(_Strict):
    """PyTorch in its own layer: the wheel's version and CUDA variant decide GPU support."""

    version: Version
    variant: Variant = "default"
    packages: list[Req] = Field(default_factory=list)  # torchvision etc., same layer
    index_url: Url | None = None  # overrides the index that compat picks for the variant


class JupyterSpec(_Strict):
    enabled: bool = True
    app: Literal["lab", "notebook"] = "lab"
    port: Port = 8888


class GpuSpec(_Strict):
    cuda: Version  # the CUDA the image's wheels were built for, e.g. "12.8"
    required: bool = False  # True: refuse to run without a GPU


class CheckSpec(_Strict):
    """A workload that proves the lab does its job (``labctl check``)."""

    name: Name
    run: Line | None = None  # a shell command, run inside the image
    script: Line | None = None  # a file beside the spec, copied in and run with python
    timeout: int = Field(600, ge=1, le=7200)


class ImageSpec(_Strict):
    name: Name
    description: Line = ""
    base: ImageRef = "debian:bookworm"
    python: PyVersion = "3.11"
    apt: list[AptName] = Field(default_factory=list)
    torch: TorchSpec | None = None
    pip: list[Req] = Field(default_factory=list)
    pip_nodeps: list[Req] = Field(default_factory=list)
    extras: list[Req] = Field(default_factory=list)
    index_url: Url | None = None
    extra_index_urls: list[Url] = Field(default_factory=list)
    wheelhouse: Line | None = None
    env: dict[EnvName, Quoted] = Field(default_factory=dict)
    jupyter: JupyterSpec | None = None
    command: list[Line] | None = None
    ports: list[Port] = Field(default_factory=list)
    volumes: list[Name] = Field(default_factory=list)
    src: list[Line] = Field(default_factory=list)
    workdir: AbsPath = "/workspace"
    gpu: GpuSpec | None = None
    checks: list[CheckSpec] = Field(default_factory=list)
    # Where the spec came from; not a YAML key.
    source: Path | None = Field(default=None, exclude=True)
    chain: tuple[str, ...] = Field(default=(), exclude=True)


# How to fix a bad value, by top-level key. Shown under the error.
FIX_HINTS: dict[str, str] = {
    "base": "use an image reference such as 'debian:bookworm' (see `labctl base bootstrap`)",
    "python": "write the version as a quoted string, e.g. python: \"3.11\"",
    "apt": "list Debian package names, one per item, e.g. [git, fonts-noto-cjk]",
    "pip": "list PEP 508 requirements, one per item, e.g. ['pandas>=2,<3']",
    "pip_nodeps": "list PEP 508 requirements, one per item, e.g. ['d2l==0.17.6']",
    "extras": "list PEP 508 requirements, one per item",
    "torch": "e.g. torch: {version: '2.10.0', variant: cu128, packages: ['torchvision==0.25.0']}",
    "env": "use NAME: value pairs on one line each, values without newlines or stray quotes",
    "jupyter": "e.g. jupyter: {enabled: true, port: 8888}",
    "gpu": "e.g. gpu: {cuda: '12.8'}",
    "volumes": "name volumes defined in volumes.yaml",
    "workdir": "use an absolute path such as /workspace",
    "command": "write the command as a list: [python, train.py]",
    "checks": "each check has a name and either run: or script:",
    "index_url": "use a full URL such as https://pypi.org/simple",
    "extra_index_urls": "use full URLs such as https://download.pytorch.org/whl/cu128",
}

_MERGED_DICTS = {"env", "torch", "jupyter", "gpu"}


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "str") or "[" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(err: dict[str, Any], data: dict[str, Any]) -> str:
    key = _key_path(err["loc"])
    if err["type"] == "extra_forbidden":
        field = str(err["loc"][-1])
        fields = ImageSpec.model_fields if len(err["loc"]) == 1 else {}
        close = difflib.get_close_matches(field, list(fields), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{key}: unknown key{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{key}: {msg}"


def validation_error(path: Path, exc: ValidationError, data: dict[str, Any]) -> LabError:
    errors = exc.errors()
    lines = [_describe(e, data) for e in errors[:12]]
    if len(errors) > 12:
        lines.append(f"... and {len(errors) - 12} more")
    tops = [str(e["loc"][0]) for e in errors if e["loc"]]
    fixes = [FIX_HINTS[t] for t in dict.fromkeys(tops) if t in FIX_HINTS]
    return LabError(
        f"invalid image spec ({len(errors)} problem{'s' if len(errors) > 1 else ''})",
        file=str(path),
        details=lines,
        fix="; ".join(fixes) if fixes else "correct the keys named above",
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning syntax errors into a LabError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabError("file not found", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise LabError(
            f"not valid YAML{where}: {problem}",
            file=str(path),
            fix="check indentation and quoting on that line",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LabError(
            "must be a mapping of keys to values", file=str(path), fix="start with e.g. 'base:'"
        )
    return data


def merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child keys replace the parent's; mappings (env, torch, jupyter, gpu) merge one level."""
    out = dict(parent)
    for key, value in child.items():
        if key in _MERGED_DICTS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def resolve_raw(name: str, images_dir: Path, _seen: tuple[str, ...] = ()) -> tuple[dict, tuple]:
    """The merged YAML mapping of a spec after following ``extends``, and the chain of names."""
    path = images_dir / f"{name}.yaml"
    if name in _seen:
        raise LabError(
            f"'extends' loops: {' -> '.join((*_seen, name))}",
            file=str(path),
            fix="remove one of the 'extends' keys in that chain",
        )
    if not path.is_file():
        known = sorted(p.stem for p in images_dir.glob("*.yaml"))
        close = difflib.get_close_matches(name, known, n=1)
        raise LabError(
            f"no image spec named '{name}' in {images_dir}",
            fix=(f"did you mean '{close[0]}'? " if close else "")
            + f"known specs: {', '.join(known) or 'none'}",
        )
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data, (name,)
    if not isinstance(parent, str):
        raise LabError(
            "extends: must be the name of another spec", file=str(path), fix="extends: yolo-cpu"
        )
    pdata, chain = resolve_raw(parent, images_dir, (*_seen, name))
    return merge(pdata, data), (name, *chain)


def load_spec(name: str, images_dir: Path) -> ImageSpec:
    data, chain = resolve_raw(name, images_dir)
    path = images_dir / f"{name}.yaml"
    try:
        return ImageSpec(**{**data, "name": name, "source": path, "chain": chain})
    except ValidationError as e:
        raise validation_error(path, e, data) from None
    except TypeError as e:  # e.g. a key that is not a string
        raise LabError(f"invalid image spec: {e}", file=str(path)) from None


def spec_names(images_dir: Path) -> list[str]:
    return sorted(p.stem for p in images_dir.glob("*.yaml"))
