"""Render an ImageSpec through the Jinja templates into a build context + content hash.

Pure: reads the templates, the spec, lab settings and the files they name; talks to
no engine. Python requirements go into files of the context, never into Dockerfile
lines; the few values that do reach the Dockerfile were validated by the spec.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import jinja2
from packaging.requirements import Requirement

from labctl import __version__, resources, torch_wheels
from labctl.errors import LabError
from labctl.lab import Lab
from labctl.spec import ImageSpec

UV_VERSION = "0.13.9"
# Always installed in the first layer: what uv, the entrypoint and TLS need (uv makes the
# venv, so python3-venv and the pip wheels it pulls in are not needed).
SYSTEM_PACKAGES = ("ca-certificates", "python3", "tini", "util-linux")
PIP_CHECK = "python /opt/labctl/lib/pip_check.py"
# `labctl build` serves the wheelhouse here, inside the network namespace of the build's
# RUN steps (Engine.serving): the wheels never enter the context or the image.
WHEELHOUSE_PORT = 8765
WHEELHOUSE_URL = f"http://127.0.0.1:{WHEELHOUSE_PORT}/"
# --allow-root: a lab runs as root only when the host user is root or Docker is rootless
# (container root is then the host user); Jupyter would refuse to start otherwise.
JUPYTER_CMD = (
    "jupyter {app} --ip=0.0.0.0 --port={port} --no-browser --allow-root"
    " --ServerApp.root_dir={root}"
)


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

    def step_keys(self) -> list[str]:
        """For each Dockerfile instruction, the spec key it came from (for build errors)."""
        keys: list[str] = []
        current = "base"
        for line in _instructions(self.dockerfile):
            if line.startswith("# labctl-key:"):
                current = line.split(":", 1)[1].strip()
            elif not line.startswith("#"):
                keys.append(current)
        return keys

    def labelled(self, labels: dict[str, str]) -> BuildContext:
        """This context with one LABEL instruction appended to its Dockerfile. Labels carry
        the digest, so they cannot be part of what the digest covers."""
        text = _dockerfile("_labels.j2", {"labels": labels})
        dockerfile = self.dockerfile + text
        return replace(self, dockerfile=dockerfile,
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
        for name, data in self.files.items():
            dest = target / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)


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


def _dq(value: str) -> str:
    """Double-quote a value for ENV/LABEL: escape backslash, quote and $; a line break
    (possible only in a folder name) would end the instruction, so it becomes a space."""
    value = re.sub(r"[\r\n]", " ", value)
    return '"' + re.sub(r'(["\\$])', r"\\\1", value) + '"'


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
    env.filters["dq"] = _dq
    return env


def _lines(reqs: list[str]) -> bytes:
    return ("\n".join(reqs) + "\n").encode() if reqs else b""


def _torch_requirements(spec: ImageSpec) -> list[str]:
    assert spec.torch
    return [f"torch=={spec.torch.version}", *spec.torch.packages]


def _constraints(spec: ImageSpec) -> list[str]:
    """Pins that keep later layers from replacing what the torch layer installed."""
    if not spec.torch:
        return []
    pins = []
    for req in _torch_requirements(spec):
        r = Requirement(req)
        pins.append(f"{r.name}{r.specifier}" if str(r.specifier) else r.name)
    return pins


def command(spec: ImageSpec) -> list[str]:
    if spec.command:
        return list(spec.command)
    if spec.jupyter and spec.jupyter.enabled:
        j = spec.jupyter
        return JUPYTER_CMD.format(app=j.app, port=j.port, root=spec.workdir).split()
    return ["bash"]


def ports(spec: ImageSpec) -> list[int]:
    out = list(spec.ports)
    if spec.jupyter and spec.jupyter.enabled and spec.jupyter.port not in out:
        out.insert(0, spec.jupyter.port)
    return out


def _read_ca(lab: Lab) -> bytes | None:
    path = lab.settings.network.ca_bundle
    if not path:
        return None
    p = lab.resolve_path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise LabError(
            f"cannot read the extra CA bundle {p}: {e.strerror}",
            fix="fix network.ca_bundle in labctl.yaml, or unset PIP_CERT/REQUESTS_CA_BUNDLE/"
            "SSL_CERT_FILE",
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise LabError(
            f"{p} holds no PEM certificate",
            fix="point network.ca_bundle at a PEM file (-----BEGIN CERTIFICATE-----)",
        )
    return data


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
            file=str(spec.source) if spec.wheelhouse else None,
            fix="create it and put .whl files in it, or remove the wheelhouse setting",
        )
    lines = []
    for wheel in sorted(folder.glob("*.whl")):
        lines.append(f"{wheel.name} {wheel.stat().st_size}")
    return folder, _lines(lines) or b"# no wheels\n"


def _template_files(folder: str) -> dict[str, bytes]:
    """templates/FOLDER/* as labctl/FOLDER/* of the context: files the images run."""
    root = resources.templates_dir() / folder
    return {
        f"labctl/{folder}/{p.relative_to(root).as_posix()}": p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _prepare_files(lab: Lab, spec: ImageSpec) -> dict[str, bytes]:
    out = {}
    for script in spec.prepare:
        path = lab.images_dir / script
        if not path.is_file():
            raise LabError(f"prepare: {script} not found in {lab.images_dir}",
                           file=str(spec.source), fix="create the script or remove it from prepare")
        out[f"prepare/{script}"] = path.read_bytes()
    return out


def buildargs(lab: Lab, spec: ImageSpec) -> dict[str, str]:
    """Values passed as build args: the index and mirror (cache-relevant), and proxies."""
    net = lab.settings.network
    args = {
        "LABCTL_INDEX_URL": spec.index_url or net.index_url or "",
        "LABCTL_EXTRA_INDEX_URLS": " ".join([*spec.extra_index_urls, *net.extra_index_urls]),
        "LABCTL_APT_MIRROR": net.apt_mirror or "",
    }
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        value = getattr(net, name)
        if value:
            args[name] = args[name.upper()] = value
    return args


def _lock(lab: Lab, spec: ImageSpec) -> tuple[str, dict[str, bytes], list[str]]:
    """The spec's lock state and, per install layer, the constraints file that holds the
    layer to the lock's versions (and hashes)."""
    from labctl import lockfile

    lock = lockfile.read_lock(lockfile.lock_path(spec, lab.images_dir), spec.name)
    if lock is None:
        return "none", {}, []
    sections, notes = lockfile.usable_pins(spec, lock)
    layers = lockfile.layer_constraints(sections)
    present = {"torch": bool(spec.torch), "pip": bool(spec.pip or spec.pip_nodeps),
               "pip_nodeps": bool(spec.pip_nodeps), "extras": bool(spec.extras)}
    files = {layer: data for layer, data in layers.items() if present[layer]}
    return lockfile.state(spec, lock), files, notes


def _system(lab: Lab) -> tuple[dict[str, object], dict[str, bytes]]:
    """What _system.j2 needs, for a lab's Dockerfile and the system image alike: template
    values and context files (uv's installer, the extra CA)."""
    ca = _read_ca(lab)
    values = {"labctl_version": __version__, "system_packages": SYSTEM_PACKAGES,
              "uv_version": UV_VERSION, "ca_bundle": ca is not None}
    files = _template_files("system")
    if ca is not None:
        files["labctl/ca-extra.crt"] = ca
    return values, files


def _dockerfile(template: str, values: dict[str, object]) -> str:
    try:
        return environment().get_template(template).render(**values)
    except jinja2.TemplateError as e:  # a bug in a template, not in the spec
        raise LabError(f"template error: {e}", file=f"templates/{template}") from None


def render(lab: Lab, spec: ImageSpec) -> BuildContext:
    system_values, system_files = _system(lab)
    lock_state, lock_files, lock_notes = _lock(lab, spec)
    wheelhouse, manifest = _wheelhouse(lab, spec)
    torch_index = None
    if spec.torch:
        torch_index = spec.torch.index_url or torch_wheels.index_url(
            spec.torch.version, spec.torch.variant
        )
    values = {
        **system_values,
        "spec": spec,
        "spec_file": f"images/{spec.name}.yaml",
        "wheelhouse": wheelhouse is not None,
        "find_links": f"--find-links {WHEELHOUSE_URL} " if wheelhouse else "",
        "wheelhouse_url": WHEELHOUSE_URL,
        "torch_index": torch_index,
        # Pins that stop later layers from replacing the torch layer's packages.
        "constrain": "-c /opt/labctl/constraints.txt " if _constraints(spec) else "",
        # Layers held to images/NAME.lock by a constraints file each (see lockfile.py).
        "lock": {layer: layer in lock_files for layer in ("torch", "pip", "pip_nodeps",
                                                           "extras")},
        "ports": ports(spec),
        "command": command(spec),
        "pip_check": PIP_CHECK,
    }
    dockerfile = _dockerfile("Dockerfile.j2", values)
    files: dict[str, bytes] = {"Dockerfile": dockerfile.encode(), **system_files}
    files.update(_template_files("image"))
    if spec.torch:
        files["labctl/requirements-torch.txt"] = _lines(_torch_requirements(spec))
    if spec.pip or spec.pip_nodeps:
        files["labctl/requirements-lab.txt"] = _lines(list(spec.pip))
    if _constraints(spec):
        files["labctl/constraints.txt"] = _lines(_constraints(spec))
    if spec.pip_nodeps:
        files["labctl/requirements-nodeps.txt"] = _lines(list(spec.pip_nodeps))
    # Always there (empty when the spec has none): its RUN ends with the dependency check,
    # so adding the first extra package changes no earlier layer.
    files["labctl/requirements-extras.txt"] = _lines(list(spec.extras))
    if wheelhouse is not None:
        files["labctl/wheelhouse.txt"] = manifest
    files.update(_prepare_files(lab, spec))
    for layer, data in lock_files.items():
        files[f"labctl/lock-{layer}.txt"] = data
    args = buildargs(lab, spec)
    ctx = BuildContext(spec=spec, dockerfile=dockerfile, files=files, buildargs=args,
                       lock_state=lock_state, lock_notes=lock_notes, wheelhouse=wheelhouse)
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


def render_lock_image(lab: Lab, spec: ImageSpec) -> BuildContext:
    """The system image: only the first layers of ``spec``'s Dockerfile (system, CA,
    Python + uv), rendered from the same include and with the same build args, so it
    shares those layers and their build cache with every lab on the same base. `labctl
    lock` resolves in it; `labctl build` serves a wheelhouse from it."""
    values, system_files = _system(lab)
    # The lab's spec files (chain), so that a failing first layer names their line.
    base = ImageSpec(name="labctl-lock", base=spec.base, python=spec.python, chain=spec.chain)
    dockerfile = _dockerfile("lock.Dockerfile.j2", {**values, "spec": base})
    files: dict[str, bytes] = {"Dockerfile": dockerfile.encode(), **system_files}
    args = buildargs(lab, spec)
    ctx = BuildContext(spec=base, dockerfile=dockerfile, files=files, buildargs=args)
    ctx.digest = content_hash(files, args)
    return ctx
