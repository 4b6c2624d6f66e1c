"""Image specs: load YAML, resolve ``extends``, validate with pydantic -> ImageSpec.

Errors name the file and line (from the YAML parser's node marks, taken once at load
time), the key path, what is wrong and how to fix it (LabError).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from labctl.config import validators as v
from labctl.config import yamlfile
from labctl.config.report import ENV_HINT, INTERNAL_KEYS, dotted, nearest, validation_error
from labctl.errors import LabError

AptName = Annotated[str, AfterValidator(v.apt_package)]
Req = Annotated[str, AfterValidator(v.requirement)]
ImageRef = Annotated[str, AfterValidator(v.image_ref)]
EnvName = Annotated[str, AfterValidator(v.env_name)]
EnvKey = Annotated[str, AfterValidator(v.env_key)]
Quoted = Annotated[str, AfterValidator(v.quoted_value)]
Line = Annotated[str, AfterValidator(v.no_control)]
PathText = Annotated[str, AfterValidator(v.path_text)]
AbsPath = Annotated[str, AfterValidator(v.abs_path)]
Workdir = Annotated[str, AfterValidator(v.workdir)]
RelPath = Annotated[str, AfterValidator(v.rel_path)]
Url = Annotated[str, AfterValidator(v.url)]
PyVersion = Annotated[str, AfterValidator(v.python_version)]
Version = Annotated[str, AfterValidator(v.version)]
# "default" is what `tensorrt: true` becomes: the release table's default.
TrtVersion = Annotated[str, AfterValidator(lambda x: x if x == "default" else v.version(x))]
Variant = Annotated[str, AfterValidator(v.torch_variant)]
Name = Annotated[str, AfterValidator(v.name)]
Script = Annotated[str, AfterValidator(v.rel_script)]
# Strict: YAML's `true` is not port 1.
Port = Annotated[StrictInt, Field(ge=1, le=65535)]

# What every labctl image's environment holds before the spec's env (templates/_system.j2
# renders its ENV instruction from here), so that `$PATH` in a spec's env expands to what
# the image really has.
IMAGE_ENV: dict[str, str] = {
    "DEBIAN_FRONTEND": "noninteractive",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
    "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    "PIP_NO_CACHE_DIR": "1",
    "UV_NO_CACHE": "1",
    "UV_LINK_MODE": "hardlink",
    "UV_PYTHON_DOWNLOADS": "never",
    "VIRTUAL_ENV": "/opt/venv",
    "PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
class CompatItem(BaseModel):
    """One row of tables/compat.yaml: a book's code and the pin or shim that runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    serves: list[str]
    pip: list[str] = Field(default_factory=list)
    shim: str | None = None
    source: str


class CompatTable(BaseModel):
    items: dict[str, CompatItem]


def compat_items() -> dict[str, CompatItem]:
    from labctl import tables

    return tables.load("compat.yaml", CompatTable).items


def _compat_name(value: str) -> str:
    if value not in compat_items():
        raise ValueError(f"{value!r} is no book-compatibility item; known:"
                         f" {', '.join(compat_items())}")
    return value


CompatName = Annotated[str, AfterValidator(_compat_name)]
# The packages that make `jupyter: {app: ...}` work, added when a spec names none, and
# what serves TensorBoard through Jupyter (TensorBoard has no authentication of its own).
JUPYTER_PACKAGES = {"lab": "jupyterlab>=4.4,<5", "notebook": "notebook>=7,<8"}
TENSORBOARD_PACKAGES = ("jupyter-server-proxy>=4.4,<5", "tensorboard>=2.18,<3")
_VAR = re.compile(r"\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}"
                  r"|\$([A-Za-z_][A-Za-z0-9_]*)|\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Docker's ENV substitution, done here so the image gets the literal value: $NAME,
    ${NAME}, ${NAME:-default}, ${NAME:+alternative}; \\$ is a literal dollar. A name
    that is not set (and has no default) is an error, never an empty or literal $NAME."""

    def one(m: re.Match[str]) -> str:
        if m[0] == "\\$":
            return "$"
        if m[0] == "$":
            raise ValueError("has a '$' that names no variable; write \\$ for a literal dollar")
        name = m[1] or m[4]
        if m[2] == "-":
            return env.get(name) or m[3]
        if m[2] == "+":
            return m[3] if env.get(name) else ""
        if name not in env:
            raise ValueError(f"uses ${name}, which the image does not set; write the value"
                             f" out (or \\$ for a literal dollar); set:"
                             f" {', '.join(sorted(env))}")
        return env[name]

    return _VAR.sub(one, value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TorchSpec(_Strict):
    """PyTorch in its own layer: the wheel's version and CUDA variant decide GPU support."""

    version: Version
    # default (PyPI's wheel), cpu, cuNNN, or auto: the engine's choice (settle_torch).
    variant: Variant = "default"
    # True once `auto` was settled: `labctl list` says so (not a YAML key).
    by_auto: bool = Field(default=False, exclude=True)
    packages: list[Req] = Field(default_factory=list)  # torchvision etc., same layer
    index_url: Url | None = None  # overrides the index that compat picks for the variant


class JupyterSpec(_Strict):
    enabled: bool = True
    app: Literal["lab", "notebook"] = "lab"
    port: Port = 8888
    # TensorBoard behind Jupyter's token (jupyter-server-proxy), reading the shared logs.
    tensorboard: bool = True


class GpuSpec(_Strict):
    cuda: Version  # the CUDA the image's wheels were built for, e.g. "12.8"
    required: bool = False  # True: refuse to run without a GPU


class CheckSpec(_Strict):
    """A workload that proves the lab does its job (``labctl check``)."""

    name: Name
    run: Line | None = None  # a shell command, run inside the image
    script: Script | None = None  # a file under images/, run with python or bash
    timeout: StrictInt = Field(600, ge=1, le=7200)

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
    wheelhouse: PathText | None = None
    env: dict[EnvKey, Quoted] = Field(default_factory=dict)
    jupyter: JupyterSpec | None = None
    command: list[Line] | None = None
    ports: list[Port] = Field(default_factory=list)
    volumes: list[Name] = Field(default_factory=list)
    src: list[RelPath] = Field(default_factory=list)  # default source folders (lab-relative)
    # Volumes also mounted inside each source folder, e.g. {data: data} makes the d2l
    # books' "../data" land in the shared data folder.
    src_volumes: dict[Name, RelPath] = Field(default_factory=dict)
    workdir: Workdir = "/workspace"
    # A mapping: the lab wants the GPU; false: it never uses one; unset: a CUDA torch lab
    # uses the GPU where the engine has one, the CPU elsewhere (gpu.compat.gpu_use).
    gpu: Annotated[Union[Annotated[GpuSpec, Tag("~mapping")],  # noqa: UP007
                         Annotated[Literal[False], Tag("~off")]],
                   Discriminator(lambda v: "~off" if v is False else "~mapping")] | None = None
    # TensorRT in the image (tables/tensorrt.yaml): a release such as "10.16", or true for
    # the table's default; checked against the spec's CUDA by labctl.gpu.tensorrt.
    tensorrt: TrtVersion | None = None
    checks: list[CheckSpec] = Field(default_factory=list)
    # Scripts under images/ run at build time as root, after the packages (fonts,
    # settings and caches a lab needs offline).
    prepare: list[Script] = Field(default_factory=list)
    # Book compatibility items (tables/compat.yaml) the lab carries: pins and shims.
    compat: list[CompatName] = Field(default_factory=list)
    # Where the spec came from; not YAML keys (load_spec fills them in).
    source: Path | None = Field(default=None, exclude=True)
    chain: tuple[str, ...] = Field(default=(), exclude=True)
    # "key.path" -> (file, line) of the value, in the file of the chain that set it.
    where: dict[str, tuple[Path, int]] = Field(default_factory=dict, exclude=True)

    @field_validator("tensorrt", mode="before")
    @classmethod
    def _tensorrt_shorthand(cls, value: object) -> object:
        """`tensorrt: true` asks for the table's default release, `false` for none."""
        if value is True:
            return "default"
        return None if value is False else value

    @field_validator("jupyter", mode="before")
    @classmethod
    def _jupyter_shorthand(cls, value: object) -> object:
        """`jupyter: true` / `jupyter: false`, the form people write first."""
        return {"enabled": value} if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _settle(self) -> ImageSpec:
        """Expand the env against the image's own (Docker's ENV rules, done here so that
        what the image gets is literal)."""
        env: dict[str, str] = {**IMAGE_ENV, "LABCTL_WORKSPACE": self.workdir}
        expanded: dict[str, str] = {}
        for key, value in self.env.items():
            try:
                expanded[key] = env[key] = expand(value, env)
            except ValueError as e:
                raise ValueError(f"env.{key}: {e}") from None
            if key == "PATH" and IMAGE_ENV["PATH"] not in expanded[key]:
                raise ValueError("env.PATH must keep the image's own PATH: write e.g."
                                 " PATH: \"/opt/extra/bin:$PATH\"")
        # A derived value of a frozen model, set once while it is being validated.
        object.__setattr__(self, "env", expanded)
        return self

    @property
    def lab_packages(self) -> list[str]:
        """What the pip layer installs: the spec's pip list, the pins of its compat items,
        and JupyterLab (or Notebook) when Jupyter is enabled and the spec names no Jupyter
        package: a lab that builds must also start."""
        items = compat_items()
        out = [*self.pip, *(p for c in self.compat for p in items[c].pip)]
        names = {canonicalize_name(Requirement(r).name)
                 for r in (*out, *self.pip_nodeps, *self.extras)}
        if not (self.jupyter and self.jupyter.enabled):
            return out
        if not names & {"jupyterlab", "notebook", "jupyter"}:
            out.append(JUPYTER_PACKAGES[self.jupyter.app])
        if self.jupyter.tensorboard:
            out += [p for p in TENSORBOARD_PACKAGES
                    if canonicalize_name(Requirement(p).name) not in names]
        return out

    @property
    def shims(self) -> list[str]:
        items = compat_items()
        return [s for c in self.compat if (s := items[c].shim)]

    def origin(self, key: str) -> tuple[Path, int] | None:
        """(file, line) of a key path such as 'pip' or 'torch.version', or of its nearest
        parent that was set when the key itself was not."""
        return nearest(self.where, key)

    def file_of(self, key: str) -> str:
        """The spec file (of the extends chain) that set ``key``, for an error's file."""
        found = self.origin(key)
        return str(found[0] if found else self.source or f"images/{self.name}.yaml")

    def locate(self, key: str) -> str:
        """'images/x.yaml:12', where the learner finds ``key``."""
        found = self.origin(key)
        if found is None:
            return f"images/{self.source.name if self.source else self.name + '.yaml'}"
        return f"images/{found[0].name}:{found[1]}"


# How to fix a bad value, by top-level key. Shown under the error.
FIX_HINTS: dict[str, str] = {
    "base": "use an image reference such as 'debian:bookworm' (see `labctl base bootstrap`)",
    "python": "write the version as a quoted string, e.g. python: \"3.11\"",
    "apt": "list Debian package names, one per item, e.g. [git, fonts-noto-cjk]",
    "pip": "list PEP 508 requirements, one per item, e.g. ['pandas>=2,<3']",
    "pip_nodeps": "list PEP 508 requirements, one per item, e.g. ['d2l==0.17.6']",
    "extras": "list PEP 508 requirements, one per item",
    "torch": "e.g. torch: {version: '2.10.0', variant: cu128, packages: ['torchvision==0.25.0']}",
    "env": ENV_HINT,
    "jupyter": "e.g. jupyter: {enabled: true, port: 8888}, or jupyter: true",
    "gpu": "e.g. gpu: {cuda: '12.8'}, or gpu: false for a lab that never uses the GPU",
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
    "src": "list source folders inside the lab folder, one per item (e.g. [books/d2l-zh])",
    "src_volumes": "map a volume to a folder name inside the source, e.g. {data: data}",
    "tensorrt": "e.g. tensorrt: true (the default release), or tensorrt: \"10.16\"; a CUDA 12"
    " torch (cu12x) is needed",
    "compat": "list book-compatibility items of labctl/tables/compat.yaml, e.g. [pandas-1.5]",
}

_MERGED_DICTS = {"env", "torch", "jupyter", "gpu"}


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping (see yamlfile.read for what is refused, and how)."""
    return yamlfile.read(path).data


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
            id="spec.key-not-a-name",
            file=str(path),
            fix="keys are names such as 'pip'; quote a key that YAML reads as a number or"
            " true/false",
        )
    if "name" in data and data["name"] != name:
        raise LabError(
            f"name: {data['name']!r} differs from the file name '{name}'",
            id="spec.name-mismatch",
            file=str(path),
            fix=f"a spec is named by its file: remove 'name:' or rename the file to"
            f" {data['name']}.yaml",
        )
    internal = [k for k in INTERNAL_KEYS if k in data]
    if internal:
        raise LabError(
            "invalid image spec (1 problem)",
            id="spec.invalid",
            file=str(path),
            details=[f"{internal[0]}: unknown key"],
            fix="remove that key; labctl fills it in",
        )


def _chain(name: str, images_dir: Path, seen: tuple[str, ...] = ()
           ) -> list[yamlfile.Document]:
    """The documents of ``name`` and every spec it extends, child first."""
    path = images_dir / f"{name}.yaml"
    if name in seen:
        raise LabError(
            f"'extends' loops: {' -> '.join((*seen, name))}",
            id="spec.extends-loop",
            file=str(path),
            fix="remove one of the 'extends' keys in that chain",
        )
    if not path.is_file():
        known = spec_names(images_dir)
        close = difflib.get_close_matches(name, known, n=1)
        raise LabError(
            ("extends: " if seen else "") + f"no image spec named '{name}' in {images_dir}",
            id="spec.no-such-spec",
            file=str(images_dir / f"{seen[-1]}.yaml") if seen else None,
            fix=(f"did you mean '{close[0]}'? " if close else "")
            + f"known specs: {', '.join(known) or 'none'}",
        )
    doc = yamlfile.read(path)
    _check_keys(name, path, doc.data)
    parent = doc.data.get("extends")
    if parent is None:
        return [doc]
    if not isinstance(parent, str):
        raise LabError("extends: must be the name of another spec",
                       id="spec.bad-extends",
                       file=str(path),
                       fix="extends: yolo-cpu")
    try:
        v.name(parent)
    except ValueError:  # `extends: ../outside` would read any YAML file on the disk
        raise LabError(f"extends: {parent!r} is not a spec name",
                       id="spec.bad-extends",
                       file=str(path),
                       fix="name a spec of this lab's images/ folder, e.g. extends: yolo-cpu"
                       ) from None
    return [doc, *_chain(parent, images_dir, (*seen, name))]


def resolve_raw(name: str, images_dir: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The merged YAML mapping of a spec after following ``extends``, and the chain of names."""
    docs = _chain(name, images_dir)
    return _merged(docs), tuple(d.path.stem for d in docs)


def _merged(docs: list[yamlfile.Document]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for doc in reversed(docs):  # the root parent first
        own = {k: val for k, val in doc.data.items() if k not in ("name", "extends")}
        data = merge(data, own)
    return data


def _where(docs: list[yamlfile.Document]) -> dict[str, tuple[Path, int]]:
    """'key.path' -> (file, line) in the file of the chain that set it (child over parent,
    merged mappings key by key)."""
    out: dict[str, tuple[Path, int]] = {}
    for doc in reversed(docs):
        for key in doc.data:
            if not (key in _MERGED_DICTS and isinstance(doc.data[key], dict)):
                for k in [k for k in out if k == key or k.startswith(f"{key}.")]:
                    del out[k]
        for path, line in doc.lines.items():
            out[".".join(str(p) for p in path)] = (doc.path, line)
    return out


def load_spec(name: str, images_dir: Path) -> ImageSpec:
    docs = _chain(name, images_dir)
    data = _merged(docs)
    where = _where(docs)
    path = images_dir / f"{name}.yaml"
    try:
        return ImageSpec(**{**data, "name": name, "source": path,
                            "chain": tuple(d.path.stem for d in docs), "where": where})
    except ValidationError as e:
        # With `extends`, name the file that holds the first bad value (parent or child).
        first = nearest(where, dotted(tuple(e.errors()[0]["loc"])))
        raise validation_error(first[0] if first else path, e, ImageSpec, "image spec", where,
                               FIX_HINTS) from None


def settle_torch(spec: ImageSpec, engine_has_gpu: bool) -> ImageSpec:
    """`torch.variant: auto` made concrete for an engine: where it has an NVIDIA GPU the
    CUDA wheel (gpu.cuda's variant, else PyPI's default), where it has none the CPU wheel,
    which leaves out the CUDA libraries a GPU-less engine never uses (several GB). A lab
    that requires a GPU keeps the CUDA wheel."""
    torch = spec.torch
    if torch is None or torch.variant != "auto":
        return spec
    gpu = spec.gpu if isinstance(spec.gpu, GpuSpec) else None
    if engine_has_gpu or (gpu and gpu.required):
        variant = "cu" + gpu.cuda.replace(".", "") if gpu else "default"
    else:
        variant = "cpu"
    return spec.model_copy(update={"torch": torch.model_copy(
        update={"variant": variant, "by_auto": True})})


def spec_names(images_dir: Path) -> list[str]:
    return sorted(p.stem for p in images_dir.glob("*.yaml"))
