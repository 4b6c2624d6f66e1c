"""A spec as the list of layers its image is built from (pure: no engine, no Jinja).

Layers follow change frequency, so changing a spec rebuilds only what it must: after the
shared first layers (templates/_system.j2: system packages + CA, Python + uv) come the
torch layer (and TensorRT where the spec asks), labctl's runtime files, the spec's apt
packages, its Python packages (pip, then pip_nodeps), extras (ending with the dependency
check), prepare scripts, and last the spec's env, workdir, ports and command.
templates/Dockerfile.j2 writes each layer as `# labctl-key: KEY`, its comment lines and
its instructions; the key maps a failed step back to the spec line it came from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from packaging.requirements import Requirement

from labctl.config.spec import ImageSpec, compat_items

UV_VERSION = "0.13.9"
# Always installed in the first layer: what uv, the entrypoint and TLS need (uv makes the
# venv, so python3-venv and the pip wheels it pulls in are not needed).
SYSTEM_PACKAGES = ("ca-certificates", "python3", "tini", "util-linux")
PIP_CHECK = "python /opt/labctl/lib/pip_check.py"
# In every lab: the font matplotlib needs for the Chinese book's labels (see matplotlibrc).
FONT_PACKAGES = ("fonts-wqy-microhei",)
# Where labctl_site.py (the shims, the offline hint) reads the spec's book compatibility.
COMPAT_FILE = "/opt/labctl/compat.json"
# labctl's entrypoint (incontainer/image/): installed in the last layer, compared with
# labctl's own copy before a lab starts (runtime/run.py)
ENTRYPOINT_FILE = "entrypoint.sh"
ENTRYPOINT_PATH = "/usr/local/bin/labctl-entrypoint"
ENTRYPOINT = ["/usr/bin/tini", "--", ENTRYPOINT_PATH]
# `labctl build` serves the wheelhouse (and, with the classic builder, index credentials)
# here, inside the network namespace of the build's RUN steps: neither enters the context
# or the image.
HELPER_PORT = 8765
WHEELHOUSE_URL = f"http://127.0.0.1:{HELPER_PORT}/"
# Index credentials: fetched from the helper for one RUN and removed at its end (classic
# builder), or a BuildKit secret mount there (never in a layer either way).
NETRC = "/tmp/labctl.netrc"
# BuildKit only: uv's cache and apt's lists and archives as cache mounts (kept between
# builds, in no layer), the credentials as a secret, the wheelhouse as a bind mount.
UV_CACHE = "/root/.cache/uv"
BK_UV = f"--mount=type=cache,id=labctl-uv,target={UV_CACHE}"
BK_APT = ("--mount=type=cache,id=labctl-apt-lists,target=/var/lib/apt/lists,sharing=locked"
          " --mount=type=cache,id=labctl-apt-archives,target=/var/cache/apt/archives,"
          "sharing=locked")
BK_SECRET = f"--mount=type=secret,id=netrc,target={NETRC}"
BK_WHEELS = "--mount=type=bind,source=wheelhouse,target=/wheelhouse"
# The extras step's own files, a folder of BuildKit's context (extras_files): one RUN
# instead of COPY + RUN, a tenth of a second of an "add one package" rebuild, keyed on
# exactly those files. /mnt is an empty folder of the base images, so the mount leaves no
# mount point behind in the layer.
EXTRAS_DIR = "extras"
BK_EXTRAS = f"--mount=type=bind,source={EXTRAS_DIR},target=/mnt"
# apt's package caches (pkgcache.bin, srcpkgcache.bin: 78 MB, rewritten by every update)
# are rebuilt on demand: no layer keeps them. Under BuildKit lists and archives are mounts.
APT_CACHES = "/var/cache/apt/*.bin"
APT_CLEAN = f"rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb {APT_CACHES}"
APT_CLEAN_MOUNTED = f"rm -f {APT_CACHES}"
Backend = Literal["classic", "buildkit"]
# --allow-root: a lab runs as root only when the host user is root or Docker is rootless
# (container root is then the host user); Jupyter would refuse to start otherwise.
JUPYTER_CMD = (
    "jupyter {app} --ip=0.0.0.0 --port={port} --no-browser --allow-root"
    " --ServerApp.root_dir={root}"
)
LOCKED_LAYERS = ("torch", "pip", "pip_nodeps", "extras")


@dataclass(frozen=True)
class Layer:
    """One part of the Dockerfile: the spec key it comes from, comment lines, and its
    instructions (each a whole instruction; an empty one is a blank line)."""

    key: str
    steps: tuple[str, ...]
    comment: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inputs:
    """What the layers need besides the spec, decided by render from the lab."""

    locked: frozenset[str] = frozenset()  # layers with a lock constraints file
    wheelhouse: bool = False  # a wheelhouse is served to the installs
    torch_index: str | None = None  # the torch variant's index, when not the default
    secrets: bool = False  # index credentials are served to the installs
    backend: Backend = "classic"
    tensorrt: tuple[str, ...] = ()  # the TensorRT pins (gpu.tensorrt), when the spec asks
    tensorrt_index: str = ""  # the index that holds TensorRT's wheels


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


def torch_requirements(spec: ImageSpec) -> list[str]:
    assert spec.torch
    return [f"torch=={spec.torch.version}", *spec.torch.packages]


def constraints(spec: ImageSpec) -> list[str]:
    """Pins that keep later layers from replacing what the torch layer installed."""
    if not spec.torch:
        return []
    pins = []
    for req in torch_requirements(spec):
        r = Requirement(req)
        pins.append(f"{r.name}{r.specifier}" if str(r.specifier) else r.name)
    return pins


def _lines(reqs: list[str]) -> bytes:
    return ("\n".join(reqs) + "\n").encode() if reqs else b""


def requirement_files(spec: ImageSpec, tensorrt: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The context files holding the spec's requirements (never Dockerfile lines)."""
    files: dict[str, bytes] = {}
    if spec.torch:
        files["labctl/requirements-torch.txt"] = _lines(torch_requirements(spec))
    if tensorrt:
        files["labctl/requirements-tensorrt.txt"] = _lines(list(tensorrt))
    if spec.lab_packages or spec.pip_nodeps:
        files["labctl/requirements-lab.txt"] = _lines(spec.lab_packages)
    if constraints(spec):
        files["labctl/constraints.txt"] = _lines(constraints(spec))
    if spec.pip_nodeps:
        files["labctl/requirements-nodeps.txt"] = _lines(list(spec.pip_nodeps))
    # Always there (empty when the spec has none): its RUN ends with the dependency check,
    # so adding the first extra package changes no earlier layer.
    files["labctl/requirements-extras.txt"] = _lines(list(spec.extras))
    files["labctl/compat.json"] = compat_json(spec)
    return files


def compat_json(spec: ImageSpec) -> bytes:
    """The spec's book compatibility, for labctl_site.py inside the image."""
    items = compat_items()
    return json.dumps({"shims": spec.shims, "items": [
        {"name": c, "serves": items[c].serves, "pip": items[c].pip, "shim": items[c].shim}
        for c in spec.compat]}, indent=1, ensure_ascii=False).encode() + b"\n"


def run(*commands: str, mounts: tuple[str, ...] = ()) -> str:
    return "RUN " + "".join(m + " " for m in mounts) + " \\\n && ".join(commands)


def copy(sources: list[str], dest: str) -> str:
    return f"COPY {' '.join(sources)} {dest}"


class _Plan:
    """The layers of one spec, with the few choices every install step shares."""

    def __init__(self, spec: ImageSpec, inputs: Inputs) -> None:
        self.spec, self.inputs = spec, inputs
        self.buildkit = inputs.backend == "buildkit"
        links = "/wheelhouse" if self.buildkit else WHEELHOUSE_URL
        self.find_links = f"--find-links {links} " if inputs.wheelhouse else ""
        self.constrain = "-c /opt/labctl/constraints.txt " if constraints(spec) else ""

    def lock(self, layer: str) -> str:
        return f"-c /opt/labctl/lock-{layer}.txt " if layer in self.inputs.locked else ""

    def lock_file(self, layer: str) -> list[str]:
        return [f"labctl/lock-{layer}.txt"] if layer in self.inputs.locked else []

    def fetching(self, *commands: str) -> str:
        """A RUN that downloads with uv. Classic builder: served credentials are fetched
        first and removed last, so they are in no layer (a failed RUN leaves no layer).
        BuildKit: uv's cache, the credentials and the wheelhouse are mounts."""
        return fetching(self.inputs, *commands)

    def apt(self, *packages: str) -> str:
        return apt(self.inputs.backend, *packages)

    def layers(self) -> list[Layer]:
        spec = self.spec
        out: list[Layer] = []
        if self.inputs.wheelhouse:
            out.append(Layer("wheelhouse", (copy(["labctl/wheelhouse.txt"], "/opt/labctl/"),), (
                f"The wheels themselves are served to uv at {WHEELHOUSE_URL} while `labctl"
                " build`",
                "runs; this list of them (name, size) makes a changed wheelhouse rerun the"
                " installs.")))
        if spec.torch:
            index = f"--index-url {self.inputs.torch_index} " if self.inputs.torch_index else ""
            out.append(Layer("torch", (
                copy(["labctl/requirements-torch.txt", *self.lock_file("torch")], "/opt/labctl/"),
                self.fetching(f"uv pip install {self.find_links}{index}{self.lock('torch')}"
                              "-r /opt/labctl/requirements-torch.txt"),
            )))
        if self.inputs.tensorrt:
            out.append(Layer("tensorrt", (
                copy(["labctl/requirements-tensorrt.txt"], "/opt/labctl/"),
                self.fetching(f"uv pip install {self.find_links}--extra-index-url "
                              f"{self.inputs.tensorrt_index} "
                              "-r /opt/labctl/requirements-tensorrt.txt"),
            ), ("TensorRT (the spec's tensorrt:), every package at one version; pypi.org"
                " has only", "stubs of its libraries, the wheels are on NVIDIA's index. Its"
                " own layer after torch:", "a package change never downloads it again.")))
        out.append(Layer("fonts", (self.apt(*FONT_PACKAGES),), (
            "The CJK font of every lab's matplotlib (labctl's matplotlibrc lists it first).",)))
        out.append(self._runtime())
        if spec.apt:
            out.append(Layer("apt", (self.apt(*spec.apt),)))
        if spec.lab_packages or spec.pip_nodeps:
            out.append(self._pip())
        out.append(self._extras())
        if spec.prepare:
            scripts = [f"{'python' if s.endswith('.py') else 'bash'} /opt/labctl/prepare/{s}"
                       for s in spec.prepare]
            out.append(Layer("prepare", (copy(["prepare/"], "/opt/labctl/prepare/"),
                                         run(*scripts))))
        out.append(self._env())
        return out

    def _runtime(self) -> Layer:
        """labctl's runtime files and hooks: their own layer, so a change to the lab's
        packages never reruns them."""
        spec = self.spec
        startup = "/home/lab/.ipython/profile_default/startup"
        return Layer("runtime", (
            copy(["labctl/image/"], "/opt/labctl/lib/"),
            run('ln -s /opt/labctl/lib/labctl.pth "$(python -c \'import sysconfig;'
                ' print(sysconfig.get_path("purelib"))\')/labctl.pth"',
                f"install -d -o lab -g lab /home/lab/.ipython {startup.rsplit('/', 1)[0]}"
                f" {startup}",
                f"install -o lab -g lab -m 0644 /opt/labctl/lib/ipython_startup.py"
                f" {startup}/00-labctl.py",
                # jupyter_server_config.d/ holds only extension switches; other settings
                # are read from jupyter_server_config.json itself: TensorBoard's proxy, and
                # a JupyterLab that calls out to no one (no news feed, no update check, an
                # extension manager that lists no PyPI). overrides.json: the news question
                # and the update check are off in the page's settings as well.
                "install -D -m 0644 /opt/labctl/lib/jupyter_server_config.json"
                " /opt/venv/etc/jupyter/jupyter_server_config.json",
                "install -D -m 0644 /opt/labctl/lib/jupyterlab_overrides.json"
                " /opt/venv/share/jupyter/lab/settings/overrides.json",
                f"mkdir -p {spec.workdir}", f"chown lab:lab {spec.workdir}"),
            "ENV MATPLOTLIBRC=/opt/labctl/lib/matplotlibrc \\\n    PIP_USER=1",
        ), ("labctl's own files (hooks, the dependency check, the offline hint and",
            "book shims) come before the lab's packages, so a package change never reruns them.",
            "`pip install` in a running lab installs for the learner (PIP_USER: ~/.local)."))

    def _pip(self) -> Layer:
        spec = self.spec
        sources = ["labctl/requirements-lab.txt"]
        sources += ["labctl/requirements-nodeps.txt"] if spec.pip_nodeps else []
        sources += ["labctl/constraints.txt"] if self.constrain else []
        sources += self.lock_file("pip") + self.lock_file("pip_nodeps")
        installs = [f"uv pip install {self.find_links}{self.constrain}{self.lock('pip')}"
                    "-r /opt/labctl/requirements-lab.txt"]
        if spec.pip_nodeps:
            installs.append(f"uv pip install {self.find_links}--no-deps "
                            f"{self.lock('pip_nodeps')}-r /opt/labctl/requirements-nodeps.txt")
        installs.append("python /opt/labctl/lib/warm.py")
        comment = ("The lab's packages, then (same layer) those installed without their"
                   " dependencies.",) if spec.pip_nodeps else ()
        return Layer("pip", (copy(sources, "/opt/labctl/"), self.fetching(*installs)), comment)

    def extras_sources(self) -> list[str]:
        return ["labctl/requirements-extras.txt",
                *(["labctl/constraints.txt"] if self.constrain else []),
                *self.lock_file("extras")]

    def _extras(self) -> Layer:
        spec = self.spec
        sources = self.extras_sources()
        commands = [PIP_CHECK]
        if spec.extras:
            commands.insert(0, f"uv pip install {self.find_links}{self.constrain}"
                               f"{self.lock('extras')}-r /opt/labctl/requirements-extras.txt")
        if self.buildkit:  # the files come in through the bind mount, in the same step
            place = "install -m 0644 -t /opt/labctl " + " ".join(
                "/mnt/" + s.removeprefix("labctl/") for s in sources)
            step = (fetching(self.inputs, place, *commands, mounts=(BK_EXTRAS,))
                    if spec.extras else run(place, *commands, mounts=(BK_EXTRAS,)))
            steps: tuple[str, ...] = (step,)
        else:
            step = self.fetching(*commands) if spec.extras else run(*commands)
            steps = (copy(sources, "/opt/labctl/"), step)
        return Layer("extras", steps, (
            "Always there, empty when the spec has no extras: its RUN ends with the dependency"
            " check,", "so adding the first extra package changes no earlier layer."))

    def _env(self) -> Layer:
        spec = self.spec
        pairs = [f"LABCTL_WORKSPACE={spec.workdir}"]
        pairs += [f"{key}={dq(value)}" for key, value in spec.env.items()]
        steps = [copy(["labctl/compat.json"], "/opt/labctl/"),
                 # after every step of the spec's (apt, packages, prepare run as root): the
                 # entrypoint that drops privileges is the one labctl wrote
                 copy([f"labctl/image/{ENTRYPOINT_FILE}"], ENTRYPOINT_PATH),
                 f"ENTRYPOINT {json.dumps(ENTRYPOINT)}",
                 "ENV " + " \\\n    ".join(pairs), "", f"WORKDIR {spec.workdir}"]
        if ports(spec):
            steps.append(f"EXPOSE {' '.join(str(p) for p in ports(spec))}")
        steps.append(f"CMD {json.dumps(command(spec))}")
        return Layer("env", tuple(steps), (
            "The spec's runtime settings last: they never reach an install, and changing"
            " them reruns", "none."))


def fetching(inputs: Inputs, *commands: str, mounts: tuple[str, ...] = ()) -> str:
    """A RUN whose commands download (see _Plan.fetching); ``mounts``: more BuildKit
    mounts."""
    if inputs.backend == "classic":
        if not inputs.secrets:
            return run(*commands)
        return run(f"python3 /opt/labctl/system/fetch_secret.py netrc {NETRC}"
                   f" && export NETRC={NETRC}", *commands, f"rm -f {NETRC}")
    mounts = (*mounts, BK_UV, *([BK_SECRET] if inputs.secrets else []),
              *([BK_WHEELS] if inputs.wheelhouse else []))
    env = f"export UV_NO_CACHE=0 UV_CACHE_DIR={UV_CACHE} UV_LINK_MODE=copy" + (
        f" NETRC={NETRC}" if inputs.secrets else "")
    return "RUN " + " ".join(mounts) + " " + " \\\n && ".join([env, *commands])


def apt(backend: Backend, *packages: str) -> str:
    """A RUN that installs Debian packages: lists and archives in no layer (removed, or
    BuildKit cache mounts that the next build reuses)."""
    install = ["apt-get update",
               f"apt-get install -y --no-install-recommends {' '.join(packages)}"]
    if backend == "classic":
        return run(*install, APT_CLEAN)
    return f"RUN {BK_APT} " + " \\\n && ".join([*install, APT_CLEAN_MOUNTED])


def lab_layers(spec: ImageSpec, inputs: Inputs) -> list[Layer]:
    """The layers after the shared first ones, in build order."""
    return _Plan(spec, inputs).layers()


def extras_files(spec: ImageSpec, inputs: Inputs, files: dict[str, bytes]
                 ) -> dict[str, bytes]:
    """What BuildKit's context holds besides ``files``: the extras step's files again, in
    the folder its RUN bind mounts (copies of hashed files: the hash stays the same)."""
    return {f"{EXTRAS_DIR}/{src.removeprefix('labctl/')}": files[src]
            for src in _Plan(spec, inputs).extras_sources()}


def dq(value: str) -> str:
    """Double-quote a value for ENV/LABEL: escape backslash, quote and $ (the spec's $NAME
    were expanded when it was loaded, so what is left is literal); a line break (possible
    only in a folder name) would end the instruction, so it becomes a space."""
    value = re.sub(r"[\r\n]", " ", value)
    return '"' + re.sub(r'(["\\$])', r"\\\1", value) + '"'
