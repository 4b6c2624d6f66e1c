"""A lab folder: volumes.yaml, images/*.yaml and optional labctl.yaml settings.

Found from the working directory upward (like git), or from --lab / LABCTL_LAB.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from labctl import resources
from labctl import validators as v
from labctl.errors import LabError
from labctl.spec import (
    EnvName,
    ImageSpec,
    Line,
    Quoted,
    Url,
    load_spec,
    read_yaml,
    spec_names,
    validation_error,
)

SETTINGS_FILE = "labctl.yaml"
VOLUMES_FILE = "volumes.yaml"
HostIP = Annotated[str, AfterValidator(v.no_control)]
MountTarget = Annotated[str, AfterValidator(v.mount_target)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Volume(_Strict):
    """A host folder shared by every image in the lab, and the variables that point tools at it."""

    host: Line
    container: MountTarget
    env: dict[EnvName, Quoted] = Field(default_factory=dict)
    subdirs: list[Line] = Field(default_factory=list)
    description: Line = ""


class VolumesFile(_Strict):
    volumes: dict[str, Volume] = Field(default_factory=dict)


class NetworkSettings(_Strict):
    index_url: Url | None = None
    extra_index_urls: list[Url] = Field(default_factory=list)
    apt_mirror: Url | None = None
    http_proxy: Quoted | None = None
    https_proxy: Quoted | None = None
    no_proxy: Quoted | None = None
    ca_bundle: Line | None = None  # extra CA certificates trusted during builds


class LabSettings(_Strict):
    network: NetworkSettings = NetworkSettings()
    wheelhouse: Line | None = None  # a folder of wheels preferred over the index
    tag_prefix: Line = "labctl/"
    bind: HostIP = "127.0.0.1"  # where published ports listen


def _from_env(settings: LabSettings, environ: dict[str, str]) -> LabSettings:
    """Fill unset network settings from the environment (pip's and the usual proxy vars)."""
    net = settings.network.model_dump()

    def first(*names: str) -> str | None:
        return next((environ[n] for n in names if environ.get(n)), None)

    net["index_url"] = net["index_url"] or first("LABCTL_INDEX_URL", "PIP_INDEX_URL")
    if not net["extra_index_urls"] and (extra := first("PIP_EXTRA_INDEX_URL")):
        net["extra_index_urls"] = [u for u in extra.split() if u.startswith(("http", "https"))]
    net["apt_mirror"] = net["apt_mirror"] or first("LABCTL_APT_MIRROR")
    net["http_proxy"] = net["http_proxy"] or first("http_proxy", "HTTP_PROXY")
    net["https_proxy"] = net["https_proxy"] or first("https_proxy", "HTTPS_PROXY")
    net["no_proxy"] = net["no_proxy"] or first("no_proxy", "NO_PROXY")
    net["ca_bundle"] = net["ca_bundle"] or first(
        "LABCTL_CA_BUNDLE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"
    )
    wheelhouse = settings.wheelhouse or first("LABCTL_WHEELHOUSE")
    try:
        return settings.model_copy(
            update={"network": NetworkSettings(**net), "wheelhouse": wheelhouse}
        )
    except ValidationError as e:
        raise LabError(
            "a network setting taken from the environment is invalid",
            details=[str(err["msg"]) for err in e.errors()],
            fix="check PIP_INDEX_URL, PIP_EXTRA_INDEX_URL and the *_proxy variables",
        ) from None


@dataclass
class Lab:
    root: Path
    settings: LabSettings = field(default_factory=LabSettings)
    volumes: dict[str, Volume] = field(default_factory=dict)

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def spec_names(self) -> list[str]:
        return spec_names(self.images_dir)

    def spec(self, name: str) -> ImageSpec:
        spec = load_spec(name, self.images_dir)
        unknown = [vol for vol in spec.volumes if vol not in self.volumes]
        if unknown:
            raise LabError(
                f"volumes: {', '.join(unknown)} not defined in {self.root / VOLUMES_FILE}",
                file=str(spec.source),
                fix=f"use one of: {', '.join(self.volumes) or 'none'}, or add it to volumes.yaml",
            )
        return spec

    def image_tag(self, name: str) -> str:
        return f"{self.settings.tag_prefix}{name}:latest"

    def host_path(self, volume: Volume) -> Path:
        p = Path(os.path.expanduser(volume.host))
        return p if p.is_absolute() else self.root / p

    def rel(self, path: Path | str) -> str:
        """A path as the learner sees it: relative to the lab folder when inside it."""
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def resolve_path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.root / p


def is_lab(path: Path) -> bool:
    return (path / VOLUMES_FILE).is_file() or (path / SETTINGS_FILE).is_file()


def find_root(start: Path | None = None, explicit: str | None = None) -> Path:
    if explicit:
        root = Path(explicit).expanduser().resolve()
        if not is_lab(root):
            raise LabError(
                f"{root} is not a lab folder (no {VOLUMES_FILE} or {SETTINGS_FILE})",
                fix=f"create one with `labctl init {root}`",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if is_lab(d):
            return d
    raise LabError(
        f"no lab folder found in {here} or above it",
        fix="run `labctl init mylab && cd mylab`, or pass --lab DIR (or set LABCTL_LAB)",
    )


def _read_model(path: Path, model: type[BaseModel], what: str) -> Any:
    """A validated optional YAML file: defaults when it is missing."""
    raw = read_yaml(path) if path.is_file() else {}
    try:
        return model(**raw)
    except ValidationError as e:
        raise validation_error(path, e, raw, model, what) from None


def load_lab(explicit: str | None = None, environ: dict[str, str] | None = None) -> Lab:
    environ = dict(os.environ) if environ is None else environ
    root = find_root(explicit=explicit or environ.get("LABCTL_LAB"))
    settings = _read_model(root / SETTINGS_FILE, LabSettings, "lab settings")
    vols = _read_model(root / VOLUMES_FILE, VolumesFile, "volumes file")
    return Lab(root=root, settings=_from_env(settings, environ), volumes=dict(vols.volumes))


def init_lab(target: Path) -> list[tuple[Path, bool]]:
    """Copy the shipped defaults into ``target``; never overwrite. Returns (path, written)."""
    target.mkdir(parents=True, exist_ok=True)
    src_root = resources.shipped_root()
    sources = [resources.default_volumes_file()]
    sources += sorted(p for p in resources.default_images_dir().rglob("*") if p.is_file())
    results: list[tuple[Path, bool]] = []
    for src in sources:
        dest = target / src.relative_to(src_root)
        if dest.exists():
            results.append((dest, False))
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        results.append((dest, True))
    settings = target / SETTINGS_FILE
    if not settings.exists():
        settings.write_text(_SETTINGS_TEMPLATE, encoding="utf-8")
        results.append((settings, True))
    else:
        results.append((settings, False))
    return results


_SETTINGS_TEMPLATE = """\
# labctl lab settings. Every key is optional; unset network keys are taken from
# PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, http(s)_proxy, no_proxy and
# PIP_CERT / REQUESTS_CA_BUNDLE / SSL_CERT_FILE when those are set.
network: {}
#   index_url: https://pypi.tuna.tsinghua.edu.cn/simple
#   extra_index_urls: []
#   apt_mirror: http://mirrors.tuna.tsinghua.edu.cn/debian
#   https_proxy: http://127.0.0.1:7890
#   ca_bundle: /etc/ssl/certs/corporate-ca.pem
# wheelhouse: wheels        # a folder of .whl files preferred over the index
# bind: 127.0.0.1           # where Jupyter and other ports are published
"""
