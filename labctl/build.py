"""Build a rendered context with the docker SDK: stream progress, tag only on success."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import __version__, resources
from labctl.engine import LABEL_LAB, LABEL_PREFIX, LABEL_SPEC, Engine
from labctl.errors import LabError
from labctl.lab import SETTINGS_FILE, Lab
from labctl.render import WHEELHOUSE_PORT, BuildContext, render_lock_image
from labctl.spec import ImageSpec

LABEL_HASH = f"{LABEL_PREFIX}hash"
LABEL_VERSION = f"{LABEL_PREFIX}version"
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LAYER = re.compile(r"^ ---> ([0-9a-f]{12})$")


@dataclass
class BuildEvent:
    """One thing worth showing: a new step, a line of output, or a cache hit."""

    kind: str  # "step" | "output" | "cached"
    text: str
    step: int = 0
    total: int = 0
    key: str = ""


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


def labels(lab: Lab, ctx: BuildContext) -> dict[str, str]:
    return {
        LABEL_SPEC: ctx.spec.name,
        LABEL_HASH: ctx.digest,
        LABEL_VERSION: __version__,
        LABEL_LAB: str(lab.root),
    }


def state(engine: Engine, tag: str, digest: str) -> str:
    """missing / current / outdated, from the image's hash label."""
    found = engine.image_labels(tag)
    if found is None:
        return "missing"
    return "current" if found.get(LABEL_HASH) == digest else "outdated"


def spec_line(lab: Lab, ctx: BuildContext, key: str) -> str:
    """'images/x.yaml:12' for the spec key a failing step came from."""
    top = key.split(".")[0]
    candidates: list[Path] = []
    if top == "network":
        candidates.append(lab.root / SETTINGS_FILE)
    else:
        candidates += [lab.images_dir / f"{n}.yaml" for n in ctx.spec.chain]
    for path in candidates:
        if not path.is_file():
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.match(rf"^{re.escape(key.split('.')[-1])}\s*:", line.strip()) or re.match(
                rf"^{re.escape(top)}\s*:", line
            ):
                return f"{lab.rel(path)}:{no} ({key})"
    return f"{lab.rel(candidates[0]) if candidates else 'the spec'} ({key})"


def ensure_base(engine: Engine, base: str, pull: bool) -> None:
    if engine.image(base) is not None:
        return
    if pull and engine.pull(base):
        return
    raise LabError(
        f"the base image {base} is not in the engine"
        + (" and could not be pulled" if pull else " (--no-pull)"),
        fix=f"make it from a Debian mirror: `labctl base bootstrap {base}`"
        + ("" if pull else ", or build with --pull"),
    )


def build(
    engine: Engine,
    lab: Lab,
    ctx: BuildContext,
    tag: str,
    *,
    nocache: bool = False,
    pull: bool = True,
    force: bool = False,
    on_event: Callable[[BuildEvent], None] = lambda e: None,
) -> BuildResult:
    name = ctx.spec.name
    if not force and not nocache and state(engine, tag, ctx.digest) == "current":
        img = engine.image(tag)
        return BuildResult(name, tag, "current", image_id=img.id, size=img.attrs.get("Size", 0))
    ensure_base(engine, ctx.spec.base, pull)
    ctx = ctx.labelled(labels(lab, ctx))
    keys = ctx.step_keys()
    start = time.monotonic()
    run = _Run(keys)
    with _served_wheelhouse(engine, lab, ctx, on_event, nocache) as (network_mode, args):
        try:
            # With a wheelhouse, --no-cache has just rebuilt the shared first layers (the
            # server's image): the build takes those new layers, and nothing after them can
            # come from the cache, as no earlier build had them as parents.
            for event in engine.build(ctx.tar(), buildargs=args,
                                      nocache=nocache and ctx.wheelhouse is None,
                                      pull=False, network_mode=network_mode):
                if "error" in event:
                    key = keys[run.step - 1] if 0 < run.step <= len(keys) else "base"
                    raise _step_error(lab, ctx, event, run, key)
                run.feed(event, on_event)
        except KeyboardInterrupt:
            # The classic builder goes on after the client leaves: stop its container
            # (before the wheelhouse server whose network it may share).
            engine.stop_build_containers(run.layer)
            raise
    if not run.image_id:
        raise LabError(f"the build of {name} ended without an image", details=run.tail[-10:])
    engine.tag(run.image_id, tag)
    img = engine.image(tag)
    return BuildResult(
        name, tag, "built", image_id=run.image_id, seconds=time.monotonic() - start,
        steps=run.total, cached_steps=len(run.cached), cached=run.cached,
        size=img.attrs.get("Size", 0) if img else 0,
    )


def system_image_tag(lab: Lab, spec: ImageSpec) -> str:
    """One image of the shared first layers per base and Python (it serves as `labctl
    lock`'s resolver and a build's wheelhouse server), e.g.
    labctl/lock:debian-bookworm-py3.11."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.base).strip("-.")[:100]
    return f"{lab.settings.tag_prefix}lock:{base}-py{spec.python}"


def system_image(engine: Engine, lab: Lab, spec: ImageSpec,
                 on_event: Callable[[BuildEvent], None] = lambda e: None,
                 nocache: bool = False) -> str:
    """Build (or find current) the image of the first layers of ``spec``'s Dockerfile
    (system, CA, Python + uv); its tag. Its layers are the lab's own, so it costs nothing
    once a lab on the same base has been built, and building it first costs a lab build
    nothing either."""
    tag = system_image_tag(lab, spec)
    build(engine, lab, render_lock_image(lab, spec), tag, on_event=on_event, nocache=nocache)
    return tag


def direct_loopback(no_proxy: str) -> str:
    """``no_proxy`` with 127.0.0.1 and localhost added: the served wheelhouse must not be
    asked of a proxy."""
    hosts = [h.strip() for h in no_proxy.split(",") if h.strip()]
    return ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])


@contextmanager
def _served_wheelhouse(engine: Engine, lab: Lab, ctx: BuildContext,
                       on_event: Callable[[BuildEvent], None], nocache: bool
                       ) -> Iterator[tuple[str | None, dict[str, str]]]:
    """The network mode and build args for the build's RUN steps: the defaults, or, with a
    wheelhouse, the namespace of a container that serves it at render.WHEELHOUSE_URL."""
    if ctx.wheelhouse is None:
        yield None, ctx.buildargs
        return
    if not engine.is_local():
        raise LabError(
            f"a wheelhouse ({ctx.wheelhouse}) needs a Docker engine on this machine: the"
            " folder is mounted into the container that serves it to the build",
            fix="build on the machine that runs the engine, or remove the wheelhouse setting",
        )
    on_event(BuildEvent("output", f"serving the wheelhouse {ctx.wheelhouse} to the build"))
    try:
        image = system_image(engine, lab, ctx.spec, on_event, nocache=nocache)
    except LabError as e:
        e.message = f"{ctx.spec.name}: the shared first layers (built first, to serve the" \
                    f" wheelhouse from): {e.message}"
        raise
    # As the host user, so that a wheelhouse only its owner can read is served too
    # (under rootless Docker, container root already is the host user).
    user = None if engine.is_rootless() else f"{os.getuid()}:{os.getgid()}"
    script = (resources.data_dir() / "serve_wheels.py").read_text(encoding="utf-8")
    cmd = ["python3", "-c", script, str(WHEELHOUSE_PORT), "/srv"]
    # Proxies may also come from the Docker CLI's config (docker-py adds them to builds).
    args = dict(ctx.buildargs)
    args["no_proxy"] = args["NO_PROXY"] = direct_loopback(
        args.get("no_proxy") or engine.config_no_proxy())
    with engine.serving(image, str(ctx.wheelhouse), cmd, user=user) as mode:
        yield mode, args


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


def _step_error(lab: Lab, ctx: BuildContext, event: dict[str, Any], run: _Run, key: str
                ) -> LabError:
    step, total, instruction, tail = run.step, run.total, run.instruction, run.tail
    msg = (event.get("errorDetail") or {}).get("message") or event["error"]
    low = msg.lower()
    if "no space left on device" in low:
        return LabError(
            "the build ran out of disk space",
            details=tail[-5:],
            fix="free space with `docker system prune` and check `docker system df`",
        )
    fix = "correct that spec line and build again; the previous image is still tagged"
    if any(("requires" in t and "installed" in t) or "incompatible" in t for t in tail):
        fix = "two packages pin incompatible versions (named above): relax one pin in the spec"
        if any(t.startswith("labctl: incompatible packages") for t in tail):
            key = "pip"  # the dependency check ends the extras RUN; the pins are the lab's
    elif "hash mismatch" in " ".join(tail).lower():
        fix = (f"a downloaded file differs from the one images/{ctx.spec.name}.lock recorded"
               " (a changed mirror or proxy?); if you trust the new file, run"
               f" `labctl lock {ctx.spec.name}` to record it")
    elif "no solution found" in " ".join(tail).lower():
        fix = "the requirements cannot be satisfied together: see the resolver's lines above"
        if ctx.lock_state == "stale":
            fix += f"; images/{ctx.spec.name}.lock is stale: run `labctl lock {ctx.spec.name}`"
    short = instruction if len(instruction) < 160 else instruction[:157] + "..."
    where = spec_line(lab, ctx, key)
    return LabError(
        f"build of '{ctx.spec.name}' failed at step {step}/{total}, from {where}",
        details=[f"instruction: {short}", f"error: {msg.strip()}", "last output:"]
        + [f"  {t}" for t in tail[-12:]],
        fix=fix,
    )
