"""A lab folder: volumes.yaml, images/*.yaml and optional labctl.yaml settings.

Found from the working directory upward (like git), or from --lab / LABCTL_LAB.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from labctl import resources
from labctl.config import validators as v
from labctl.config import yamlfile
from labctl.config.report import validation_error
from labctl.config.spec import (
    EnvKey,
    ImageSpec,
    Line,
    PathText,
    RelPath,
    Url,
    load_spec,
    settle_torch,
    spec_names,
)
from labctl.errors import LabError

SETTINGS_FILE = "labctl.yaml"
VOLUMES_FILE = "volumes.yaml"
MountTarget = Annotated[str, AfterValidator(v.mount_target)]
Proxy = Annotated[str, AfterValidator(v.proxy)]
NoProxy = Annotated[str, AfterValidator(v.no_proxy)]
Bind = Annotated[str, AfterValidator(v.bind_address)]
TagPrefix = Annotated[str, AfterValidator(v.tag_prefix)]
Registry = Annotated[str, AfterValidator(v.registry)]
HostFolder = Annotated[str, AfterValidator(v.host_folder)]
Plain = Annotated[str, AfterValidator(v.plain_value)]
MountSource = Annotated[str, AfterValidator(v.mount_source)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Volume(_Strict):
    """A host folder shared by every image in the lab, and the variables that point tools at it."""

    host: MountSource
    container: MountTarget
    env: dict[EnvKey, Plain] = Field(default_factory=dict)
    subdirs: list[RelPath] = Field(default_factory=list)
    description: Line = ""


class VolumesFile(_Strict):
    volumes: dict[str, Volume] = Field(default_factory=dict)


class NetworkSettings(_Strict):
    index_url: Url | None = None
    extra_index_urls: list[Url] = Field(default_factory=list)
    apt_mirror: Url | None = None
    http_proxy: Proxy | None = None
    https_proxy: Proxy | None = None
    no_proxy: NoProxy | None = None
    ca_bundle: PathText | None = None  # extra CA certificates trusted during builds
    # A Hugging Face mirror (an HF-API-compatible endpoint): HF_ENDPOINT in labs and in
    # `labctl data get hf:` (the Hub itself when unset).
    hf_endpoint: Url | None = None
    # A mirror of PyTorch's own index (https://download.pytorch.org/whl), where the CPU
    # wheel and the other variants come from: the variant's folder is added (.../cpu).
    torch_index: Url | None = None


class DataMirror(_Strict):
    """Where `labctl data get` looks first: a URL prefix of the libraries' downloads, and
    the prefix of a mirror that holds the same files (a campus mirror, a teacher's server)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: Url = Field(alias="from")
    to: Url


def _bytes(value: object) -> object:
    """A size as bytes: 10GB, 500 MB, 2GiB or a number of bytes (build_cache_budget)."""
    import re

    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kMGT]i?B|B)?\s*", value, re.I)
        if not m:
            raise ValueError(f"{value!r} is not a size: write e.g. 10GB or 500MB")
        unit = (m[2] or "B").upper()
        scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10,
                 "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
        return int(float(m[1]) * scale)
    return value


class LabSettings(_Strict):
    network: NetworkSettings = NetworkSettings()
    data_mirrors: list[DataMirror] = Field(default_factory=list)
    wheelhouse: PathText | None = None  # a folder of wheels preferred over the index
    tag_prefix: TagPrefix = "labctl/"
    bind: Bind = "127.0.0.1"  # where published ports listen
    # How images are built: BuildKit through the docker CLI where there is one, else the
    # docker SDK's classic builder (auto); or one of them.
    builder: Literal["auto", "classic", "buildkit"] = "auto"
    # The network of the build's RUN steps: the engine's default bridge, or the host's
    # (an engine without a working bridge: rootless without slirp4netns, a VPN's DNS).
    build_network: Literal["default", "host"] = "default"
    # Where `labctl push` sends lab images and `build` / `run` look for a current one
    # before building: HOST[:PORT][/PREFIX] (credentials come from the docker config).
    registry: Registry | None = None
    # This lab folder on an engine of another machine (DOCKER_HOST=ssh://...): where its
    # volume folders are made there (default: ~/labctl/<this folder's name> on that host).
    remote_root: HostFolder | None = None
    # labctl's BuildKit cache (its builds' layers, uv's and apt's cache mounts) is kept
    # within this size after each build and by `labctl prune` (e.g. 10GB, 500MB).
    build_cache_budget: Annotated[int, BeforeValidator(_bytes), Field(ge=0)] = 10 * 1000**3


_FROM_ENV = {
    "index_url": ("LABCTL_INDEX_URL", "PIP_INDEX_URL"),
    "apt_mirror": ("LABCTL_APT_MIRROR",),
    "http_proxy": ("http_proxy", "HTTP_PROXY"),
    "https_proxy": ("https_proxy", "HTTPS_PROXY"),
    "no_proxy": ("no_proxy", "NO_PROXY"),
    "ca_bundle": ("LABCTL_CA_BUNDLE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"),
    "hf_endpoint": ("HF_ENDPOINT",),
}


def _from_env(settings: LabSettings, environ: dict[str, str]) -> LabSettings:
    """Fill unset network settings from the environment (pip's and the usual proxy vars):
    labctl.yaml first, then the environment."""
    net = settings.network.model_dump()
    taken: dict[str, str] = {}
    for key, names in _FROM_ENV.items():
        if net[key]:
            continue
        name = next((n for n in names if environ.get(n)), None)
        if name:
            net[key], taken[key] = environ[name], name
    if not net["extra_index_urls"] and (extra := environ.get("PIP_EXTRA_INDEX_URL")):
        net["extra_index_urls"] = [u for u in extra.split() if u.startswith(("http", "https"))]
        taken["extra_index_urls"] = "PIP_EXTRA_INDEX_URL"
    wheelhouse = settings.wheelhouse or environ.get("LABCTL_WHEELHOUSE") or None
    if wheelhouse and not settings.wheelhouse:
        taken["wheelhouse"] = "LABCTL_WHEELHOUSE"
    try:
        return LabSettings(**{**settings.model_dump(by_alias=True), "network": net,
                              "wheelhouse": wheelhouse})
    except ValidationError as e:
        def setting(loc: tuple[object, ...]) -> str:  # network.https_proxy -> https_proxy
            return str(loc[1] if loc[:1] == ("network",) and len(loc) > 1 else loc[0])

        keys = [setting(tuple(err["loc"])) for err in e.errors() if err["loc"]]
        details = [f"{taken.get(k, k)}: {err['msg'].removeprefix('Value error, ')}"
                   for k, err in zip(keys, e.errors(), strict=False)]
        names = ", ".join(dict.fromkeys(taken[k] for k in keys if k in taken))
        raise LabError(
            "a network setting taken from the environment is invalid",
            id="lab.bad-network-env",
            details=details,
            fix=f"correct (or unset) {names or 'that variable'}, or set the value in"
            " labctl.yaml's network:",
        ) from None


@dataclass
class Lab:
    root: Path
    settings: LabSettings = field(default_factory=LabSettings)
    volumes: dict[str, Volume] = field(default_factory=dict)
    # The host file system whose certificate store builds trust (config/trust.py); tests
    # point it at a fixture so that rendered Dockerfiles do not depend on the machine.
    host_root: Path = Path("/")
    # Whether the engine has an NVIDIA GPU, asked only when a spec says `torch.variant:
    # auto` (the CLI passes a lazy probe of the engine; pure callers pass their answer).
    engine_gpu: Callable[[], bool] | None = None

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def spec_names(self) -> list[str]:
        return spec_names(self.images_dir)

    def spec(self, name: str) -> ImageSpec:
        spec = load_spec(name, self.images_dir)
        unknown = [vol for vol in [*spec.volumes, *spec.src_volumes] if vol not in self.volumes]
        if unknown:
            raise LabError(
                f"volumes: {', '.join(unknown)} not defined in {self.root / VOLUMES_FILE}",
                id="lab.unknown-volume",
                file=spec.file_of("volumes"),
                fix=f"use one of: {', '.join(self.volumes) or 'none'}, or add it to volumes.yaml",
            )
        for src in spec.src:
            self.inside(self.root / src, f"{spec.locate('src')}: src {src!r}")
        if spec.torch and spec.torch.variant == "auto":
            if self.engine_gpu is None:
                raise LabError(f"{name}: torch.variant auto needs the engine, to ask whether it"
                               " has a GPU", id="spec.torch-auto-no-engine",
                               file=spec.file_of("torch"),
                               fix="run the command where the engine answers, or name the"
                               " variant (cpu, cu128 ...)")
            spec = settle_torch(spec, self.engine_gpu())
        return spec

    def image_tag(self, name: str) -> str:
        return f"{self.settings.tag_prefix}{name}:latest"

    def registry_ref(self, name: str, registry: str | None = None) -> str | None:
        """NAME's image in the registry (the setting, or ``registry``)."""
        where = registry or self.settings.registry
        return f"{where.rstrip('/')}/{name}:latest" if where else None

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

    def state_dir(self, *parts: str) -> Path:
        """lab/.labctl/PARTS: labctl's own files of this lab (check scratch folders, Jupyter
        tokens, build contexts), private to the user (0700) and kept out of git. A folder
        that came from elsewhere (a bundle, a clone) is tightened, and one that is a link or
        another account's is refused: the tokens of later labs go there."""
        folder = self.root / ".labctl"
        private_folder(folder)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")
        for part in parts:
            folder = folder / part
            private_folder(folder)
        return folder

    def inside(self, path: Path, what: str) -> Path:
        """``path`` with links resolved, refused when that leaves the lab folder: a spec
        must not mount or copy what is outside it (~/.ssh, /etc/shadow)."""
        real = path.resolve()
        if real != self.root.resolve() and self.root.resolve() not in real.parents:
            raise LabError(f"{what} leads outside the lab folder (to {real})",
                           id="lab.path-outside",
                           fix="keep spec paths inside the lab folder; mount other folders"
                           " with `labctl run --src PATH`")
        return real


def host_folder_problem(path: Path) -> str | None:
    """Why a host folder must not be mounted into a lab read-write, or None: the root,
    the system's folders (also through a link), a folder that holds everyone's files."""
    real = path.resolve()
    top = v.system_folder(str(real), host=True)
    if top is None:
        return None
    if top == "/":
        return f"{real} is the root folder"
    if str(real) == top and top in v.HOST_TOPS:
        return f"{real} holds files of the whole system or of every user"
    return f"{real} is {'a system folder' if str(real) == top else f'inside {top}'}"


def is_lab(path: Path) -> bool:
    return (path / VOLUMES_FILE).is_file() or (path / SETTINGS_FILE).is_file()


def find_root(start: Path | None = None, explicit: str | None = None) -> Path:
    if explicit:
        root = Path(explicit).expanduser().resolve()
        if not is_lab(root):
            raise LabError(
                f"{root} is not a lab folder (no {VOLUMES_FILE} or {SETTINGS_FILE})",
                id="lab.not-a-lab-folder",
                fix=f"create one with `labctl init {root}`",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if is_lab(d):
            return d
    raise LabError(
        f"no lab folder found in {here} or above it",
        id="lab.no-lab-folder",
        fix="run `labctl init mylab && cd mylab`, or pass --lab DIR (or set LABCTL_LAB)",
    )


def _read_model(path: Path, model: type[BaseModel], what: str) -> Any:
    """A validated optional YAML file: defaults when it is missing."""
    doc = yamlfile.read(path, optional=True)
    try:
        return model(**doc.data)
    except ValidationError as e:
        lines = {".".join(str(p) for p in k): (path, n) for k, n in doc.lines.items()}
        raise validation_error(path, e, model, what, lines) from None


def private_folder(folder: Path) -> None:
    """``folder`` exists as a real folder of this user's, 0700 (made or tightened)."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
    except OSError as e:
        raise LabError(f"{folder}: {e.strerror or e}",
                       id="lab.token-folder-unusable",
                       fix="labctl keeps its tokens there; make it a folder of yours") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        what = "a link" if stat.S_ISLNK(st.st_mode) else (
            "not a folder" if not stat.S_ISDIR(st.st_mode) else "another account's folder")
        raise LabError(f"{folder} is {what}: labctl keeps this lab's Jupyter tokens there",
                       id="lab.token-folder-unusable",
                       fix=f"remove it (`rm -r {folder}`); labctl makes it again, private")
    if stat.S_IMODE(st.st_mode) != 0o700:
        folder.chmod(0o700)


def _homes() -> set[Path]:
    """Every account's home folder (a volume must not be one, nor in its hidden folders)."""
    out = {Path("/root")}
    with contextlib.suppress(OSError, KeyError):
        out.add(Path.home().resolve())
    with contextlib.suppress(OSError):
        out |= {Path(p.pw_dir) for p in pwd.getpwall() if p.pw_dir not in ("", "/")}
    return out


def volume_problem(root: Path, host: Path) -> str | None:
    """Why ``host`` must not be a volume folder of the lab at ``root``, or None. Besides the
    system's folders: a home itself or any hidden folder (~/.ssh, the lab's .labctl/ and
    .git/: a volume gets files written into it), and a folder this user may not write
    (the lab, without --user, runs as the image's uid and could read another account's)."""
    problem = host_folder_problem(host)
    if problem:
        return problem
    real, lab = host.resolve(), root.resolve()
    if real == lab:
        return f"{real} is the lab folder itself (its .labctl/ holds the Jupyter tokens)"
    if real in _homes():
        return f"{real} is a home folder"
    below = real.relative_to(lab).parts if v.is_within(str(real), str(lab)) else real.parts
    hidden = next((p for p in below if p.startswith(".")), None)
    if hidden is not None:
        return f"{real} is in a hidden folder ({hidden}: keys, tokens, settings)"
    # A folder you may not write is refused, but for one a container made as root inside
    # the lab folder: `labctl doctor` names that one, with the chown.
    if real.exists() and not os.access(real, os.W_OK | os.X_OK) and not (
            v.is_within(str(real), str(lab)) and real.stat().st_uid == 0):
        return f"you may not write to {real}"
    return None


def _check_volumes(root: Path, vols: VolumesFile) -> None:
    for name, vol in vols.volumes.items():
        p = Path(os.path.expanduser(vol.host))
        problem = volume_problem(root, p if p.is_absolute() else root / p)
        if problem:
            raise LabError(f"volumes.{name}.host: {problem}",
                           id="lab.volume-not-allowed",
                           file=str(root / VOLUMES_FILE),
                           fix="point it at a folder of yours, e.g. host: data (inside the lab)")


def load_lab(explicit: str | None = None, environ: dict[str, str] | None = None,
             host_root: Path = Path("/")) -> Lab:
    environ = dict(os.environ) if environ is None else environ
    root = find_root(explicit=explicit or environ.get("LABCTL_LAB"))
    settings = _read_model(root / SETTINGS_FILE, LabSettings, "lab settings")
    vols = _read_model(root / VOLUMES_FILE, VolumesFile, "volumes file")
    _check_volumes(root, vols)
    return Lab(root=root, settings=_from_env(settings, environ), volumes=dict(vols.volumes),
               host_root=host_root)


def init_lab(target: Path) -> list[tuple[Path, bool]]:
    """Copy the shipped defaults into ``target``; never overwrite. Returns (path, written)."""
    target.mkdir(parents=True, exist_ok=True)
    src_root = resources.shipped_root()
    sources = [resources.default_volumes_file()]
    sources += sorted(p for p in resources.default_images_dir().rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts)
    results: list[tuple[Path, bool]] = []
    for src in sources:
        dest = target / src.relative_to(src_root)
        if dest.exists() or dest.is_symlink():
            results.append((dest, False))
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        results.append((dest, True))
    settings = target / SETTINGS_FILE
    if not settings.exists() and not settings.is_symlink():
        settings.write_text(_SETTINGS_TEMPLATE, encoding="utf-8")
        results.append((settings, True))
    else:
        results.append((settings, False))
    return results


_SETTINGS_TEMPLATE = """\
# labctl lab settings. Every key is optional; unset network keys are taken from
# PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, http(s)_proxy, no_proxy and
# PIP_CERT / REQUESTS_CA_BUNDLE / SSL_CERT_FILE when those are set. Builds always trust
# the host's own certificate store (/usr/local/share/ca-certificates) as well.
network: {}
#   index_url: https://pypi.tuna.tsinghua.edu.cn/simple
#   extra_index_urls: []
#   apt_mirror: http://mirrors.tuna.tsinghua.edu.cn/debian
#   https_proxy: http://127.0.0.1:7890
#   ca_bundle: /etc/ssl/certs/corporate-ca.pem
#   hf_endpoint: https://hf-mirror.com   # a Hugging Face mirror (HF_ENDPOINT)
#   torch_index: https://mirror.example.edu/pytorch/whl   # a mirror of PyTorch's index
# wheelhouse: wheels        # a folder of .whl files preferred over the index
# bind: 127.0.0.1           # where Jupyter and other ports are published
# data_mirrors:             # tried first by `labctl data get`, in this order
#   - {from: "http://d2l-data.s3-accelerate.amazonaws.com/", to: "https://mirror.example.edu/d2l/"}
"""
