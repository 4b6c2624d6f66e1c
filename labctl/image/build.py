"""Build a rendered context on the engine: stream progress, tag only on success, and map
a failed step back to the spec line it came from."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import __version__, labels, resources
from labctl.config import validators
from labctl.config.lab import SETTINGS_FILE, Lab
from labctl.config.spec import ImageSpec, TorchSpec
from labctl.engine import Engine
from labctl.errors import LabError, advise
from labctl.gpu import torch_wheels
from labctl.image import buildkit, disk
from labctl.image.events import BuildEvent
from labctl.image.layers import HELPER_PORT
from labctl.image.render import (
    BuildContext,
    _instructions,
    render_helper_image,
    render_lock_image,
    torch_index,
)

__all__ = ["BuildEvent", "BuildResult", "build", "build_each", "check_tag", "state",
           "system_image"]

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LAYER = re.compile(r"^ ---> ([0-9a-f]{12})$")
# Spec keys whose failing step is about the network or the machine, not the spec's words.
_NETWORK_KEYS = ("base", "python", "torch", "pip", "extras", "apt")


@dataclass
class BuildResult:
    name: str
    tag: str
    status: str  # "built" | "current"
    image_id: str = ""
    seconds: float = 0.0
    steps: int = 0
    cached_steps: int = 0
    size: int = 0
    cached: list[int] = field(default_factory=list)  # step numbers served from cache
    backend: str = ""  # classic | buildkit
    # (step, spec key, instruction, seconds) of each step that ran (the benchmark's
    # breakdown of where the time goes)
    timings: list[tuple[int, str, str, float]] = field(default_factory=list)
    context_bytes: int | None = None  # what BuildKit was sent of the context (None: classic)
    trimmed: int = 0  # bytes of labctl's build cache removed after it, to keep the budget

    def as_dict(self) -> dict[str, object]:
        return {"spec": self.name, "tag": self.tag, "status": self.status,
                "image_id": self.image_id, "seconds": round(self.seconds, 1),
                "steps": self.steps, "cached_steps": self.cached_steps, "size": self.size,
                "backend": self.backend, "context_bytes": self.context_bytes,
                "trimmed": self.trimmed}


def backend(builder: str) -> buildkit.Cli | None:
    """The BuildKit CLI to build with, or None for the docker SDK's classic builder.
    auto: BuildKit where a docker CLI runs it, the classic builder elsewhere."""
    if builder == "classic":
        return None
    cli = buildkit.find_cli()
    if cli is None and builder == "buildkit":
        raise LabError(
            "--builder buildkit: no docker CLI here runs BuildKit builds",
            id="build.no-buildkit",
            fix="install the buildx plugin (Debian: docker-buildx; Docker's packages:"
            " docker-buildx-plugin), or use a docker CLI before 23 with BuildKit built in"
            " (Debian bookworm's docker.io); or --builder classic")
    return cli


def image_labels(lab: Lab, ctx: BuildContext, steps: list[str] | None = None
                 ) -> dict[str, str]:
    """The image's labels; ``steps`` (disk.step_hashes) lets the next build of the spec
    size what it will write."""
    return {
        labels.SPEC: ctx.spec.name,
        labels.HASH: ctx.digest,
        labels.VERSION: __version__,
        labels.LAB: str(lab.root),
        **({labels.TORCH: torch_label(ctx.spec.torch)} if ctx.spec.torch else {}),
        **({labels.STEPS: ",".join(steps)} if steps else {}),
    }


def torch_label(torch: TorchSpec) -> str:
    """The torch wheel an image holds: version+variant ("2.10.0+cpu")."""
    cu = torch_wheels.wheel_cuda(torch.version, torch.variant)
    return f"{torch.version}+{cu or torch.variant}"


def state(engine: Engine, tag: str, digest: str) -> str:
    """missing / current / outdated, from the image's hash label."""
    return state_of(engine.image_labels(tag), digest)


def state_of(held: dict[str, str] | None, digest: str) -> str:
    """state() from the labels of the tag's image (None: no such image), read once."""
    if held is None:
        return "missing"
    return "current" if held.get(labels.HASH) == digest else "outdated"


def spec_line(lab: Lab, ctx: BuildContext, key: str) -> str:
    """'images/x.yaml:12 (pip)' for the spec key a failing step came from."""
    if key.split(".")[0] == "network":
        return f"{SETTINGS_FILE} ({key})"
    return f"{ctx.spec.locate(key)} ({key})"


def ensure_base(engine: Engine, base: str, pull: bool) -> None:
    if engine.image(base) is not None:
        return
    if pull and engine.pull(base):
        return
    raise LabError(
        f"the base image {base} is not in the engine"
        + (" and could not be pulled" if pull else " (--no-pull)"),
        id="build.no-base-image",
        fix=f"make it from a Debian mirror: `labctl base bootstrap {base}`"
        + ("" if pull else ", or build with --pull"),
    )


@dataclass(frozen=True)
class BuildOptions:
    """What `labctl build` was asked beyond the spec."""
    nocache: bool = False
    pull: bool = True  # the base image from its registry when the engine lacks it
    force: bool = False  # build even when the tagged image is current
    builder: str | None = None  # buildkit | classic | auto; None: the lab's setting


def build(engine: Engine, lab: Lab, ctx: BuildContext, tag: str,
          opts: BuildOptions = BuildOptions(),
          on_event: Callable[[BuildEvent], None] = lambda e: None) -> BuildResult:
    """``ctx`` built and tagged ``tag`` (only on success): nothing when the image is current,
    pulled when the lab's registry has it, else BuildKit's or the classic builder's build,
    refused first when the engine's disk lacks room."""
    name, nocache = ctx.spec.name, opts.nocache
    if not opts.force and not nocache and state(engine, tag, ctx.digest) == "current":
        img = engine.image(tag)
        return BuildResult(name, tag, "current", image_id=img.id, size=img.attrs.get("Size", 0))
    if not opts.force and not nocache:
        pulled = from_registry(engine, lab, ctx, tag, on_event)
        if pulled is not None:
            return pulled
    ensure_base(engine, ctx.spec.base, opts.pull)
    cli = backend(opts.builder or lab.settings.builder)
    steps = disk.step_hashes(*((ctx.buildkit_dockerfile, {**ctx.files, **ctx.buildkit_files})
                               if cli is not None else (ctx.dockerfile, ctx.files)))
    # Refused now, with the figures, rather than midway with an engine error about a
    # snapshot; the previous image stays tagged either way.
    disk.check_room(engine, lab, name, ctx.spec.base, None if nocache else steps)
    ctx = ctx.labelled(image_labels(lab, ctx, steps))
    if cli is not None:
        res = _build_buildkit(engine, lab, ctx, tag, cli, nocache=nocache, on_event=on_event)
        res.trimmed = trim_cache(engine, lab, on_event)
        return res
    return _build_classic(engine, lab, ctx, tag, nocache, on_event)


def check_tag(tag: str | None, names: Sequence[str]) -> None:
    """`labctl build --tag`: one spec, and a valid reference, said before any build (not
    after minutes of one)."""
    if tag and len(names) > 1:
        raise LabError("--tag takes one spec name",
                       id="cli.tag-many-specs", fix="build one spec at a time with --tag")
    if tag:
        try:
            validators.image_ref(tag)
        except ValueError as e:
            raise LabError(f"--tag: {e}",
                           id="cli.bad-tag", fix="e.g. --tag labctl/d2l:mine") from None


# What shows one context's build: entered around it, it yields where its events go (the
# caller's progress display, which may also turn the build's error into a better one).
Showing = Callable[[BuildContext], AbstractContextManager[Callable[[BuildEvent], None]]]


def build_each(engine: Engine, lab: Lab, contexts: Sequence[BuildContext], tag: str | None,
               opts: BuildOptions, showing: Showing,
               done: Callable[[BuildContext, BuildResult], None] = lambda c, r: None
               ) -> list[BuildResult]:
    """`labctl build`: each context built in turn (``tag``, or the lab's tag of its spec),
    ``done`` told of each result as it comes, so that a long run reports as it goes; the
    first failure ends the run."""
    results = []
    for ctx in contexts:
        with showing(ctx) as show:
            res = build(engine, lab, ctx, tag or lab.image_tag(ctx.spec.name), opts, show)
        results.append(res)
        done(ctx, res)
    return results


def _build_classic(engine: Engine, lab: Lab, ctx: BuildContext, tag: str, nocache: bool,
                   on_event: Callable[[BuildEvent], None]) -> BuildResult:
    """The engine's classic builder, from the in-memory context; its failed step named
    by the spec key it came from."""
    name = ctx.spec.name
    keys = ctx.step_keys()
    start = time.monotonic()
    run = _Run(keys)
    with _helper(engine, lab, ctx, on_event, nocache) as (network_mode, args):
        try:
            # With a helper, --no-cache has just rebuilt the shared first layer (the
            # helper's image): the build takes that new layer, and nothing after it can
            # come from the cache, as no earlier build had it as a parent.
            for event in engine.build(ctx.tar(), buildargs=args,
                                      nocache=nocache and not ctx.needs_helper,
                                      pull=False, network_mode=network_mode or (
                                          "host" if lab.settings.build_network == "host"
                                          else None)):
                if "error" in event:
                    key = keys[run.step - 1] if 0 < run.step <= len(keys) else "base"
                    msg = (event.get("errorDetail") or {}).get("message") or event["error"]
                    raise _step_error(lab, ctx, msg, run.step, run.total, run.instruction,
                                      run.tail, key)
                run.feed(event, on_event)
        except KeyboardInterrupt:
            # The classic builder goes on after the client leaves: stop its container
            # (before the helper whose network it may share).
            engine.stop_build_containers(run.layer)
            raise
    if not run.image_id:
        raise LabError(f"the build of {name} ended without an image",
                       id="build.no-image", details=run.tail[-10:])
    engine.tag(run.image_id, tag)
    img = engine.image(tag)
    return BuildResult(
        name, tag, "built", image_id=run.image_id, seconds=time.monotonic() - start,
        steps=run.total, cached_steps=len(run.cached), cached=run.cached,
        size=img.attrs.get("Size", 0) if img else 0, backend="classic",
        timings=run.timings(),
    )


def from_registry(engine: Engine, lab: Lab, ctx: BuildContext, tag: str,
                  on_event: Callable[[BuildEvent], None] = lambda e: None
                  ) -> BuildResult | None:
    """The lab's registry (`registry:` in labctl.yaml, filled by `labctl push`) holds an
    image of this very spec: pull it and tag it, instead of building. The spec hash label
    decides, as it does for a local image; None when there is none or it differs."""
    ref = lab.registry_ref(ctx.spec.name)
    if ref is None:
        return None
    on_event(BuildEvent("output", f"looking for {ref} (registry: in labctl.yaml)"))
    if not engine.pull(ref):
        on_event(BuildEvent("output", f"{ref}: not in the registry (or it does not answer)"))
        return None
    img = engine.image(ref)
    if img is None or (img.labels or {}).get(labels.HASH) != ctx.digest:
        on_event(BuildEvent("output", f"{ref} is another version of {ctx.spec.name}: building"))
        return None
    engine.tag(img.id, tag)
    return BuildResult(ctx.spec.name, tag, "pulled", image_id=img.id,
                       size=img.attrs.get("Size", 0))


def _build_buildkit(engine: Engine, lab: Lab, ctx: BuildContext, tag: str,
                    cli: buildkit.Cli, *, nocache: bool,
                    on_event: Callable[[BuildEvent], None]) -> BuildResult:
    """The same layers through BuildKit: credentials as a secret, the wheelhouse bind
    mounted from the context folder, uv and apt caches kept between builds."""
    dockerfile = ctx.buildkit_dockerfile
    instructions = [i for i in _instructions(dockerfile) if not i.startswith("#")]
    progress = buildkit.Progress(buildkit.steps_of(instructions, ctx.step_keys(dockerfile)))
    start = time.monotonic()
    files = {**ctx.files, **ctx.buildkit_files}
    with buildkit.context_folder(files, dockerfile, ctx.wheelhouse,
                                 lab.state_dir("build") / ctx.spec.name) as folder:
        image_id = buildkit.run(cli, folder, buildargs=ctx.buildargs, secrets=ctx.secrets,
                                nocache=nocache, progress=progress, on_event=on_event,
                                network=lab.settings.build_network)
    if not image_id:
        step = progress.error_step or progress.current
        raise _step_error(lab, ctx, progress.errors[-1] if progress.errors else "failed",
                          step, progress.total, progress.instruction(step),
                          progress.output.get(step, []), progress.key(step) or "base")
    engine.tag(image_id, tag)
    img = engine.image(tag)
    timings = [(s, progress.key(s), progress.instruction(s), sec)
               for s, sec in sorted(progress.seconds.items())]
    return BuildResult(
        ctx.spec.name, tag, "built", image_id=image_id, seconds=time.monotonic() - start,
        steps=progress.total, cached_steps=len(progress.cached), cached=progress.cached,
        size=img.attrs.get("Size", 0) if img else 0, backend="buildkit", timings=timings,
        context_bytes=progress.context_bytes,
    )


def trim_cache(engine: Engine, lab: Lab, on_event: Callable[[BuildEvent], None]) -> int:
    """After a successful build: labctl's build cache back within build_cache_budget
    (its least recently used layers first, uv's and apt's cache mounts last), said when
    it trimmed any. A failure to trim fails no build."""
    budget = lab.settings.build_cache_budget
    try:
        freed = disk.trim_build_cache(engine, budget)
    except LabError as e:
        on_event(BuildEvent("output", f"could not trim the build cache: {e.message}"))
        return 0
    if freed:
        on_event(BuildEvent("output", f"trimmed labctl's build cache by {disk.human(freed)} to"
                            f" stay within build_cache_budget ({disk.human(budget)})"))
    return freed


def _first_layers_tag(lab: Lab, spec: ImageSpec, kind: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.base).strip("-.")[:100]
    return f"{lab.settings.tag_prefix}{kind}:{base}-py{spec.python}"


def system_image_tag(lab: Lab, spec: ImageSpec) -> str:
    """One image of the shared first layers per base and Python (`labctl lock`'s
    resolver), e.g. labctl/lock:debian-bookworm-py3.11."""
    return _first_layers_tag(lab, spec, "lock")


def system_image(engine: Engine, lab: Lab, spec: ImageSpec,
                 on_event: Callable[[BuildEvent], None] = lambda e: None,
                 nocache: bool = False, builder: str | None = None) -> str:
    """Build (or find current) the image of the first layers of ``spec``'s Dockerfile
    (system, CA, Python + uv); its tag. Its layers are the lab's own, so it costs nothing
    once a lab on the same base has been built, and building it first costs a lab build
    nothing either."""
    tag = system_image_tag(lab, spec)
    build(engine, lab, render_lock_image(lab, spec), tag,
          BuildOptions(nocache=nocache, builder=builder), on_event)
    return tag


def direct_loopback(no_proxy: str) -> str:
    """``no_proxy`` with 127.0.0.1 and localhost added: the helper must not be asked of a
    proxy."""
    hosts = [h.strip() for h in no_proxy.split(",") if h.strip()]
    return ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])


@contextmanager
def _helper(engine: Engine, lab: Lab, ctx: BuildContext,
            on_event: Callable[[BuildEvent], None], nocache: bool
            ) -> Iterator[tuple[str | None, dict[str, str]]]:
    """The network mode and build args for the build's RUN steps: the defaults, or, with a
    wheelhouse or index credentials, the namespace of a helper container that serves them
    at layers.WHEELHOUSE_URL (credentials under /.secrets/), for the build's duration."""
    if not ctx.needs_helper:
        yield None, ctx.buildargs
        return
    if not engine.is_local():
        raise LabError(
            "a wheelhouse or index credentials need a Docker engine on this machine: the"
            " helper container that serves them to the build mounts local folders",
            id="build.engine-not-local",
            fix="build on the machine that runs the engine, or remove the wheelhouse setting"
            " (credentials: a BuildKit build passes them as secrets)",
        )
    what = f"the wheelhouse {ctx.wheelhouse}" if ctx.wheelhouse else "the index credentials"
    on_event(BuildEvent("output", f"serving {what} to the build"))
    helper = render_helper_image(lab, ctx.spec)
    try:
        build(engine, lab, helper, helper_image_tag(lab, ctx.spec),
              BuildOptions(nocache=nocache), on_event)
    except LabError as e:
        e.message = f"{ctx.spec.name}: the shared first layer (built first, to serve the" \
                    f" build from): {e.message}"
        raise
    # As the host user, so that a wheelhouse only its owner can read is served too
    # (under rootless Docker, container root already is the host user).
    user = None if engine.is_rootless() else f"{os.getuid()}:{os.getgid()}"
    cmd = ["python3", "-c", resources.tool("serve_build.py"), str(HELPER_PORT)]
    # Proxies may also come from the Docker CLI's config (docker-py adds them to builds).
    args = dict(ctx.buildargs)
    args["no_proxy"] = args["NO_PROXY"] = direct_loopback(
        args.get("no_proxy") or engine.config_no_proxy())
    with tempfile.TemporaryDirectory(prefix="labctl-secrets-") as tmp:
        mounts = {}
        if ctx.wheelhouse is not None:
            mounts["/srv/wheels"] = str(ctx.wheelhouse)
        if ctx.secrets:
            for name, data in ctx.secrets.items():  # 0600 in a 0700 folder of the user's
                fd = os.open(Path(tmp) / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            mounts["/srv/secrets"] = tmp
        with engine.serving(helper_image_tag(lab, ctx.spec), mounts, cmd, user=user) as mode:
            yield mode, args


def helper_image_tag(lab: Lab, spec: ImageSpec) -> str:
    return _first_layers_tag(lab, spec, "helper")


@dataclass
class _Run:
    """What the build stream has said so far."""

    keys: list[str]
    step: int = 0
    total: int = 0
    instruction: str = ""
    image_id: str = ""
    layer: str = ""  # the last layer reported: the running step's container starts from it
    tail: list[str] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)
    started: dict[int, float] = field(default_factory=dict)  # step -> when it began

    def timings(self) -> list[tuple[int, str, str, float]]:
        """(step, key, instruction, seconds) of the steps that ran (not from the cache)."""
        ends = [*list(self.started.values())[1:], time.monotonic()]
        return [(s, self.keys[s - 1] if s <= len(self.keys) else "", "", end - t)
                for (s, t), end in zip(self.started.items(), ends, strict=False)
                if s not in self.cached]

    def feed(self, event: dict[str, Any], on_event: Callable[[BuildEvent], None]) -> None:
        if "aux" in event and "ID" in event["aux"]:
            self.image_id = event["aux"]["ID"]
            return
        text = _ANSI.sub("", event.get("stream") or "")
        for line in text.splitlines():
            line = line.rstrip()
            if not line:
                continue
            m = _STEP.match(line)
            if m:
                self.step, self.total, self.instruction = int(m[1]), int(m[2]), m[3]
                self.started[self.step] = time.monotonic()
                self.tail = []
                key = self.keys[self.step - 1] if self.step <= len(self.keys) else ""
                on_event(BuildEvent("step", self.instruction, self.step, self.total, key))
            elif line.strip() == "---> Using cache":
                self.cached.append(self.step)
                on_event(BuildEvent("cached", line.strip(), self.step, self.total))
            elif layer := _LAYER.match(line):
                self.layer = layer[1]
            elif line.startswith((" ---> ", "Removing intermediate")):
                continue
            else:
                self.tail = (self.tail + [line])[-25:]
                on_event(BuildEvent("output", line, self.step, self.total))


def _step_error(lab: Lab, ctx: BuildContext, msg: str, step: int, total: int,
                instruction: str, tail: list[str], key: str) -> LabError:
    """A failed step in the learner's words: where in the spec it came from, what the
    output means (tables/errors.yaml) and the fix that fits it."""
    found = advise("\n".join([*tail, msg]), "build", spec=ctx.spec.name)
    if found and found.id == "incompatible" and any(
            t.startswith("labctl: incompatible packages") for t in tail):
        key = "pip"  # the dependency check ends the extras RUN; the pins are the lab's
    fix = "correct that spec line and build again; the previous image is still tagged"
    headline = f"build of '{ctx.spec.name}' failed at step {step}/{total}"
    if found:
        fix = found.fix
        if found.id == "no-solution" and ctx.lock_state == "stale":
            fix += f"; images/{ctx.spec.name}.lock is stale: run `labctl lock {ctx.spec.name}`"
        if found.id == "disk-full":
            return LabError(f"the build of '{ctx.spec.name}' ran out of disk space on the"
                            " engine; the previous image is still tagged",
                            id=found.id, details=tail[-5:], fix=fix)
        headline += f": {found.message}"
    short = instruction if len(instruction) < 160 else instruction[:157] + "..."
    where = spec_line(lab, ctx, key)
    if found and found.id in ("tls-untrusted", "dns", "unreachable") and key in _NETWORK_KEYS:
        where += ", though the spec is not the cause"
        index = torch_index(lab, ctx.spec)
        if key == "torch" and index and index in "\n".join([*tail, instruction]):
            fix += (f"; torch comes from {index}: network.torch_index in labctl.yaml"
                    " names a mirror of PyTorch's index (the variant's folder is added)")
    return LabError(
        f"{headline}, from {where}",
        id=found.id if found else "build.step-failed",
        details=[f"instruction: {short}", f"error: {msg.strip()}", "last output:"]
        + [f"  {t}" for t in tail[-12:]],
        fix=fix,
    )
