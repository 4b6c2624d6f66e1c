"""Image specs: load YAML, resolve ``extends``, validate with pydantic -> ImageSpec.

Errors name the file, the key path, what is wrong and how to fix it (LabError).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

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
Script = Annotated[str, AfterValidator(v.rel_script)]
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
    script: Script | None = None  # a file under images/, run with python or bash
    timeout: int = Field(600, ge=1, le=7200)

    @model_validator(mode="after")
    def _one_action(self) -> CheckSpec:
        if (self.run is None) == (self.script is None):
            raise ValueError("needs exactly one of run: or script:")
        return self


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
    src: list[Line] = Field(default_factory=list)  # default source folders (lab-relative)
    # Volumes also mounted inside each source folder, e.g. {data: data} makes the d2l
    # books' "../data" land in the shared data folder.
    src_volumes: dict[Name, Name] = Field(default_factory=dict)
    workdir: AbsPath = "/workspace"
    gpu: GpuSpec | None = None
    checks: list[CheckSpec] = Field(default_factory=list)
    # Scripts under images/ run at build time as root, after the packages (fonts,
    # settings and caches a lab needs offline).
    prepare: list[Script] = Field(default_factory=list)
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
    "env": "use NAME: \"value\" pairs, values quoted strings on one line without stray quotes"
    " or a trailing backslash",
    "jupyter": "e.g. jupyter: {enabled: true, port: 8888}",
    "gpu": "e.g. gpu: {cuda: '12.8'}",
    "volumes": "name volumes defined in volumes.yaml",
    "workdir": "use an absolute path such as /workspace",
    "command": "write the command as a list: [python, train.py]",
    "checks": "each check has a name and either run: or script:",
    "prepare": "list .sh or .py files under images/, e.g. [prepare/fonts.sh]",
    "index_url": "use a full URL such as https://pypi.org/simple",
    "extra_index_urls": "use full URLs such as https://download.pytorch.org/whl/cu128",
    "ports": "list port numbers between 1 and 65535, e.g. [6006]",
    "description": "write the description on one line",
    "wheelhouse": "name a folder of .whl files, on one line",
    "src": "list source folders, one per item, each on one line",
}
# Keys of ImageSpec that are filled in by load_spec, never read from YAML.
_INTERNAL_KEYS = ("source", "chain")

_MERGED_DICTS = {"env", "torch", "jupyter", "gpu"}


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "str") or "[" in str(part):
            continue
        else:
            # A key with a newline (an injection attempt) is shown escaped, on one line.
            text = str(part).encode("unicode_escape").decode("ascii")
            out += f".{text}" if out else text
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where ``loc`` points (for did-you-mean on nested unknown keys)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None or part not in current.model_fields:
            return []
        current = _model_in(current.model_fields[part].annotation)
    if current is None:
        return []
    return [k for k in current.model_fields if k not in _INTERNAL_KEYS]


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    key = _key_path(err["loc"])
    if err["type"] == "extra_forbidden":
        field = str(err["loc"][-1])
        fields = _fields_at(model, tuple(err["loc"][:-1]))
        close = difflib.get_close_matches(field, fields, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{key}: unknown key{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{key}: {msg}"


def validation_error(
    path: Path,
    exc: ValidationError,
    data: dict[str, Any],
    model: type[BaseModel] | None = None,
    what: str = "image spec",
) -> LabError:
    """A LabError naming the file, each key path and a fix; ``model`` is what was validated."""
    model = model or ImageSpec
    errors = exc.errors()
    lines = [_describe(e, model) for e in errors[:12]]
    if len(errors) > 12:
        lines.append(f"... and {len(errors) - 12} more")
    tops = [str(e["loc"][0]) for e in errors if e["loc"]]
    hints = FIX_HINTS if model is ImageSpec else {}
    fixes = [hints[t] for t in dict.fromkeys(tops) if t in hints]
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown and not fixes:
        allowed = _fields_at(model, tuple(unknown[0]["loc"][:-1]))
        fixes = [f"rename or remove the unknown key; allowed keys: {', '.join(allowed)}"]
    return LabError(
        f"invalid {what} ({len(errors)} problem{'s' if len(errors) > 1 else ''})",
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


def _check_keys(name: str, path: Path, data: dict[str, Any]) -> None:
    """File-level key checks, so the error names the file that holds the key."""
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise LabError(
            f"key {bad[0]!r} is not a name",
            file=str(path),
            fix="keys are names such as 'pip'; quote a key that YAML reads as a number or"
            " true/false",
        )
    if "name" in data and data["name"] != name:
        raise LabError(
            f"name: {data['name']!r} differs from the file name '{name}'",
            file=str(path),
            fix=f"a spec is named by its file: remove 'name:' or rename the file to"
            f" {data['name']}.yaml",
        )
    internal = [k for k in _INTERNAL_KEYS if k in data]
    if internal:
        raise LabError(
            "invalid image spec (1 problem)",
            file=str(path),
            details=[f"{internal[0]}: unknown key"],
            fix="remove that key; labctl fills it in",
        )


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
            ("extends: " if _seen else "") + f"no image spec named '{name}' in {images_dir}",
            file=str(images_dir / f"{_seen[-1]}.yaml") if _seen else None,
            fix=(f"did you mean '{close[0]}'? " if close else "")
            + f"known specs: {', '.join(known) or 'none'}",
        )
    data = read_yaml(path)
    _check_keys(name, path, data)
    data.pop("name", None)
    parent = data.pop("extends", None)
    if parent is None:
        return data, (name,)
    if not isinstance(parent, str):
        raise LabError(
            "extends: must be the name of another spec", file=str(path), fix="extends: yolo-cpu"
        )
    pdata, chain = resolve_raw(parent, images_dir, (*_seen, name))
    return merge(pdata, data), (name, *chain)


def _origin(loc: tuple[Any, ...], chain: tuple[str, ...], images_dir: Path) -> Path:
    """The file of the chain (child first) that set the value at ``loc``."""
    for name in chain:
        path = images_dir / f"{name}.yaml"
        data = read_yaml(path)
        if not loc or loc[0] not in data:
            continue
        value = data[loc[0]]
        nested = len(loc) > 1 and isinstance(loc[1], str) and loc[0] in _MERGED_DICTS
        if not nested or (isinstance(value, dict) and loc[1] in value):
            return path
    return images_dir / f"{chain[0]}.yaml"


def load_spec(name: str, images_dir: Path) -> ImageSpec:
    data, chain = resolve_raw(name, images_dir)
    path = images_dir / f"{name}.yaml"
    try:
        return ImageSpec(**{**data, "name": name, "source": path, "chain": chain})
    except ValidationError as e:
        # With `extends`, name the file that holds the bad value (parent or child).
        where = _origin(tuple(e.errors()[0]["loc"]), chain, images_dir)
        raise validation_error(where, e, data) from None


def spec_names(images_dir: Path) -> list[str]:
    return sorted(p.stem for p in images_dir.glob("*.yaml"))
