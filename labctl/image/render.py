"""Render an ImageSpec into a build context + content hash: the layer list (layers.py)
through the Jinja templates, the requirement and lock files, labctl's in-container files.

Pure: reads the templates, the spec, lab settings and the files they name; talks to
no engine. Python requirements go into files of the context, never into Dockerfile
lines; the few values that do reach the Dockerfile were validated by the spec. Index
credentials never reach the context, the build args or the Dockerfile: they travel in
``BuildContext.secrets``, which the build serves for the RUN steps that download.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import jinja2

from labctl import __version__, resources
from labctl.config import lockfile, trust
from labctl.config.lab import Lab
from labctl.config.spec import IMAGE_ENV, ImageSpec
from labctl.data import catalogue
from labctl.errors import LabError
from labctl.gpu import tensorrt, torch_wheels
from labctl.image import layers as L


@dataclass
class BuildContext:
    spec: ImageSpec
    dockerfile: str
    files: dict[str, bytes]  # path in the context -> content (the Dockerfile included)
    buildargs: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    # images/NAME.lock: locked / stale / none, and what of a stale lock was left out.
    lock_state: str = "none"
    lock_notes: list[str] = field(default_factory=list)
    wheelhouse: Path | None = None  # the folder the build serves to uv, if any
    # Served to the RUN steps while the build runs (never in the context or the hash):
    # "netrc" with the index credentials.
    secrets: dict[str, bytes] = field(default_factory=dict, repr=False)
    # The same layers written for BuildKit (cache, secret and bind mounts). The classic
    # one (`dockerfile`) is the one hashed: both build the same image.
    buildkit_dockerfile: str = ""
    buildkit_files: dict[str, bytes] = field(default_factory=dict)  # BuildKit's context adds

    @property
    def needs_helper(self) -> bool:
        """The build's RUN steps need the helper container (wheelhouse or credentials)."""
        return self.wheelhouse is not None or bool(self.secrets)

    def step_keys(self, dockerfile: str | None = None) -> list[str]:
        """For each Dockerfile instruction, the spec key it came from (for build errors)."""
        keys: list[str] = []
        current = "base"
        for line in _instructions(dockerfile or self.dockerfile):
            if line.startswith("# labctl-key:"):
                current = line.split(":", 1)[1].strip()
            elif not line.startswith("#"):
                keys.append(current)
        return keys

    def for_builder(self, builder: str) -> BuildContext:
        """This context as ``builder`` (classic | buildkit) reads it: BuildKit's Dockerfile
        (the same layers, with its mounts) in place of the classic one, which stays the
        one hashed."""
        if builder != "buildkit":
            return self
        return replace(self, dockerfile=self.buildkit_dockerfile, files={
            **self.files, "Dockerfile": self.buildkit_dockerfile.encode()})

    def labelled(self, labels: dict[str, str]) -> BuildContext:
        """This context with one LABEL instruction appended to its Dockerfile. Labels carry
        the digest, so they cannot be part of what the digest covers."""
        text = _dockerfile("_labels.j2", {"labels": labels})
        dockerfile = self.dockerfile + text
        return replace(self, dockerfile=dockerfile, buildkit_dockerfile=(
            self.buildkit_dockerfile + text if self.buildkit_dockerfile else ""),
            files={**self.files, "Dockerfile": dockerfile.encode()})

    def tar(self) -> io.BytesIO:
        """The context as an in-memory tar, deterministic (fixed mtimes and owners)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in sorted(self.files):
                data = self.files[name]
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        return buf

    def write(self, target: Path) -> None:
        """Write the context into ``target``, a new or empty folder. Links are never
        followed there: a planted link must not make labctl overwrite another file."""
        if target.is_symlink():
            raise LabError(f"{target} is a symbolic link",
                           id="build.folder-is-link", fix="name a new folder")
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise LabError(f"{target} is not empty",
                           id="build.folder-not-empty", fix="name a new or empty folder")
        target.mkdir(parents=True, exist_ok=True)
        for name, data in sorted(self.files.items()):
            dest = target / name
            for parent in reversed(dest.relative_to(target).parents[:-1]):
                folder = target / parent
                if folder.is_symlink():
                    raise LabError(f"{folder} is a symbolic link",
                                   id="build.folder-is-link", fix="name a new folder")
                folder.mkdir(exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)


def _instructions(dockerfile: str) -> list[str]:
    """Logical lines: continuations joined, blank lines dropped, comments kept."""
    out: list[str] = []
    buf = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            if line:
                out.append(line)
            continue
        buf = f"{buf} {line}" if buf else line
        if not line.endswith("\\"):
            out.append(buf)
            buf = ""
    if buf:
        out.append(buf)
    return out


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' Jinja environment, made once per process."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["dq"] = L.dq
    return env


# --- index credentials ------------------------------------------------------------------


def split_credentials(url: str) -> tuple[str, tuple[str, str, str] | None]:
    """(the URL without user:password@, (host, user, password) or None)."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url, None
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if any(c.isspace() or c == '"' for c in user + password):
        raise LabError(f"the credentials for {host} hold a space or a quote",
                       id="build.bad-credentials",
                       fix="use a token without spaces (netrc, which carries them, cannot)")
    return urlunsplit(parts._replace(netloc=netloc)), (host, user, password)


def _netrc(creds: list[tuple[str, str, str]]) -> bytes:
    lines = [f"machine {h} login {u} password {p}" for h, u, p in dict.fromkeys(creds)]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def torch_index(lab: Lab, spec: ImageSpec) -> str | None:
    """Where torch comes from: the spec's index_url, else PyTorch's index of its variant
    (network.torch_index's mirror of it); None: the lab's normal index."""
    t = spec.torch
    return t and (t.index_url or torch_wheels.index_url(
        t.version, t.variant, lab.settings.network.torch_index))


def indexes(lab: Lab, spec: ImageSpec) -> tuple[dict[str, str], bytes]:
    """The build args for the indexes and mirror (credential-free), and a netrc with
    the credentials they held."""
    net = lab.settings.network
    creds: list[tuple[str, str, str]] = []

    def public(url: str) -> str:
        clean, cred = split_credentials(url)
        if cred:
            creds.append(cred)
        return clean

    torch = public(torch_index(lab, spec) or "")
    args = {
        "LABCTL_INDEX_URL": public(spec.index_url or net.index_url or ""),
        "LABCTL_EXTRA_INDEX_URLS": " ".join(public(u) for u in [*spec.extra_index_urls,
                                                                 *net.extra_index_urls]),
        "LABCTL_APT_MIRROR": public(net.apt_mirror or ""),
    }
    if torch:
        args["LABCTL_TORCH_INDEX"] = torch
    return args, _netrc(creds)


def buildargs(lab: Lab, spec: ImageSpec) -> dict[str, str]:
    """Values passed as build args: the index and mirror (cache-relevant, without
    credentials), and proxies (Docker keeps those out of the image's history)."""
    args, _ = indexes(lab, spec)
    args.pop("LABCTL_TORCH_INDEX", None)  # a Dockerfile value of the torch layer, not an ARG
    net = lab.settings.network
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        value = getattr(net, name)
        if value:
            args[name] = args[name.upper()] = value
    return args


# --- the shared first layers ------------------------------------------------------------


def _ca(lab: Lab) -> bytes:
    """The certificates builds trust beyond the base image's store (config/trust.py)."""
    named = lab.settings.network.ca_bundle
    return trust.extra_certificates([lab.resolve_path(named)] if named else [], lab.host_root)


def _template_files(folder: str) -> dict[str, bytes]:
    """incontainer/FOLDER/* as labctl/FOLDER/* of the context: files the images run."""
    root = resources.incontainer_dir() / folder
    return {
        f"labctl/{folder}/{p.relative_to(root).as_posix()}": p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _system(lab: Lab, secrets: bool) -> tuple[dict[str, object], dict[str, bytes]]:
    """What _system.j2 needs, for a lab's Dockerfile and the system image alike: template
    values and context files (uv's installer, the extra CA)."""
    ca = _ca(lab)
    values = {"labctl_version": __version__, "system_packages": L.SYSTEM_PACKAGES,
              "uv_version": L.UV_VERSION, "ca_bundle": bool(ca), "image_env": IMAGE_ENV,
              "secrets": secrets}
    files = _template_files("system")
    if ca:
        files["labctl/ca-extra.crt"] = ca
    return values, files


def _backend_values(backend: L.Backend, secrets: bool) -> dict[str, str | bool]:
    """What differs between the classic builder and BuildKit in the shared first layers:
    apt's lists and archives (removed, or cache mounts) and the credentials uv's installer
    needs (fetched from the helper and removed, or a secret mount)."""
    if backend == "classic":
        prefix = (f"python3 /opt/labctl/system/fetch_secret.py netrc {L.NETRC} && export"
                  f" NETRC={L.NETRC} \\\n && ") if secrets else ""
        return {"apt_mounts": "", "apt_clean": L.APT_CLEAN, "python_prefix": prefix,
                "python_suffix": f" \\\n && rm -f {L.NETRC}" if secrets else ""}
    prefix = f"{L.BK_SECRET} export NETRC={L.NETRC} \\\n && " if secrets else ""
    return {"apt_mounts": f"{L.BK_APT} ", "apt_clean": L.APT_CLEAN_MOUNTED,
            "python_prefix": prefix,
            "python_suffix": ""}


def _dockerfile(template: str, values: dict[str, object]) -> str:
    try:
        return environment().get_template(template).render(**values)
    except jinja2.TemplateError as e:  # a bug in a template, not in the spec
        raise LabError(f"template error: {e}",
                       id="build.template-error", file=f"templates/{template}") from None


# --- the lab's own layers ---------------------------------------------------------------


def wheelhouse_folder(lab: Lab, spec: ImageSpec) -> Path | None:
    """The spec's wheelhouse folder, else the lab's; None when neither names one."""
    where = spec.wheelhouse or lab.settings.wheelhouse
    return lab.resolve_path(where) if where else None


def _wheelhouse(lab: Lab, spec: ImageSpec) -> tuple[Path | None, bytes]:
    """The wheelhouse folder and its manifest (name and size of each wheel): the manifest
    goes into the context so that a changed wheelhouse changes the layers that install
    from it, without reading (or sending) gigabytes of wheels on every build. Not the
    mtime: copying the same wheels again must not reinstall torch. (A wheel replaced by
    another of the same name and size needs `labctl build --no-cache`.)"""
    folder = wheelhouse_folder(lab, spec)
    if folder is None:
        return None, b""
    if not folder.is_dir():
        raise LabError(
            f"wheelhouse folder {folder} does not exist",
            id="build.no-wheelhouse", file=spec.file_of("wheelhouse") if spec.wheelhouse else None,
            fix="create it and put .whl files in it, or remove the wheelhouse setting",
        )
    lines = [f"{w.name} {w.stat().st_size}" for w in sorted(folder.glob("*.whl"))]
    return folder, ("\n".join(lines) + "\n").encode() if lines else b"# no wheels\n"


@functools.cache
def _datasets_json() -> bytes:
    """labctl's catalogue, for the offline hint inside the image (labctl_site.py)."""
    entries = {name: {**e.model_dump(exclude_none=True), "files": [
        {**f.model_dump(exclude_none=True), "name": f.name} for f in e.files]}
        for name, e in catalogue.shipped().entries.items()}
    return json.dumps({"entries": entries}, indent=1, sort_keys=True).encode() + b"\n"


def _prepare_files(lab: Lab, spec: ImageSpec) -> dict[str, bytes]:
    out = {}
    for script in spec.prepare:
        path = lab.images_dir / script
        if not path.is_file():
            raise LabError(f"prepare: {script} not found in {lab.images_dir}",
                           id="build.no-prepare-script", file=spec.file_of("prepare"),
                           fix="create the script or remove it from prepare")
        real = lab.inside(path, f"prepare: {script}")
        out[f"prepare/{script}"] = real.read_bytes()
    return out


def _lock(lab: Lab, spec: ImageSpec) -> tuple[str, dict[str, bytes], list[str]]:
    """The spec's lock state and, per install layer, the constraints file that holds the
    layer to the lock's versions (and hashes)."""
    lock = lockfile.read_lock(lockfile.lock_path(spec, lab.images_dir), spec.name)
    if lock is None:
        return "none", {}, []
    sections, notes = lockfile.usable_pins(spec, lock)
    layers = lockfile.layer_constraints(sections)
    present = {"torch": bool(spec.torch), "pip": bool(spec.lab_packages or spec.pip_nodeps),
               "pip_nodeps": bool(spec.pip_nodeps), "extras": bool(spec.extras)}
    files = {layer: data for layer, data in layers.items() if present[layer]}
    return lockfile.state(spec, lock), files, notes


def render(lab: Lab, spec: ImageSpec) -> BuildContext:
    index_args, netrc = indexes(lab, spec)
    system_values, system_files = _system(lab, bool(netrc))
    lock_state, lock_files, lock_notes = _lock(lab, spec)
    wheelhouse, manifest = _wheelhouse(lab, spec)
    trt = tensorrt.for_spec(spec)
    trt_pins = tuple(tensorrt.requirements(trt)) if trt else ()
    inputs = L.Inputs(locked=frozenset(lock_files), wheelhouse=wheelhouse is not None,
                      torch_index=index_args.get("LABCTL_TORCH_INDEX") or None,
                      secrets=bool(netrc), tensorrt=trt_pins,
                      tensorrt_index=tensorrt.index_url() if trt else "")

    def dockerfile_for(backend: L.Backend) -> str:
        return _dockerfile("Dockerfile.j2", {
            **system_values, **_backend_values(backend, bool(netrc)), "spec": spec,
            "spec_file": f"images/{spec.name}.yaml",
            "layers": L.lab_layers(spec, replace(inputs, backend=backend))})

    dockerfile = dockerfile_for("classic")
    files: dict[str, bytes] = {"Dockerfile": dockerfile.encode(), **system_files}
    files.update(_template_files("image"))
    files["labctl/image/datasets.json"] = _datasets_json()
    files.update(L.requirement_files(spec, trt_pins))
    if wheelhouse is not None:
        files["labctl/wheelhouse.txt"] = manifest
    files.update(_prepare_files(lab, spec))
    for layer, data in lock_files.items():
        files[f"labctl/lock-{layer}.txt"] = data
    args = buildargs(lab, spec)
    ctx = BuildContext(spec=spec, dockerfile=dockerfile, files=files, buildargs=args,
                       lock_state=lock_state, lock_notes=lock_notes, wheelhouse=wheelhouse,
                       secrets={"netrc": netrc} if netrc else {},
                       buildkit_dockerfile=dockerfile_for("buildkit"),
                       buildkit_files=L.extras_files(spec, inputs, files))
    ctx.digest = content_hash(files, args)
    return ctx


def content_hash(files: dict[str, bytes], args: dict[str, str]) -> str:
    """A hash of everything that decides the image: context files and cache-relevant args."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    relevant = {k: v for k, v in args.items() if k.startswith("LABCTL_")}
    h.update(json.dumps(relevant, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _first_layers(lab: Lab, spec: ImageSpec, template: str, name: str) -> BuildContext:
    _, netrc = indexes(lab, spec)
    values, system_files = _system(lab, bool(netrc))
    # The lab's spec files (chain), so that a failing first layer names their line.
    base = ImageSpec(name=name, base=spec.base, python=spec.python, chain=spec.chain,
                     source=spec.source, where=spec.where)
    dockerfile, buildkit = (_dockerfile(template, {
        **values, **_backend_values(b, bool(netrc)), "spec": base})
        for b in ("classic", "buildkit"))
    files: dict[str, bytes] = {"Dockerfile": dockerfile.encode(), **system_files}
    args = buildargs(lab, spec)
    ctx = BuildContext(spec=base, dockerfile=dockerfile, files=files, buildargs=args,
                       secrets={"netrc": netrc} if netrc else {}, buildkit_dockerfile=buildkit)
    ctx.digest = content_hash(files, args)
    return ctx


def render_lock_image(lab: Lab, spec: ImageSpec) -> BuildContext:
    """The system image: only the first layers of ``spec``'s Dockerfile (system, CA,
    Python + uv), rendered from the same include and with the same build args, so it
    shares those layers and their build cache with every lab on the same base. `labctl
    lock` resolves in it."""
    return _first_layers(lab, spec, "lock.Dockerfile.j2", "labctl-lock")


def render_helper_image(lab: Lab, spec: ImageSpec) -> BuildContext:
    """The helper image: the very first layer of ``spec``'s Dockerfile (system packages and
    CA: python3, no index needed), which serves a build its wheelhouse and credentials."""
    ctx = _first_layers(lab, spec, "helper.Dockerfile.j2", "labctl-helper")
    ctx.secrets = {}  # built from the apt mirror alone
    return ctx
