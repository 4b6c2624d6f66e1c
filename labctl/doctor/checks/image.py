"""`--image`: checks inside each built image through one short container run: the
CUDA and GPU code torch and TensorFlow really have, whether CUDA works with the GPU
attached, and glibc for the VS Code server. What an image contains can differ from its
spec (an old build, a base image with its own torch), so the doctor asks the image
itself."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from labctl import resources
from labctl.doctor.context import Context
from labctl.doctor.registry import Finding
from labctl.errors import LabError
from labctl.gpu import compat, tensorrt, torch_wheels
from labctl.image.disk import human

MARK = "LABCTL_PROBE "
LDD_MARK = "LABCTL_LDD "
NO_PYTHON = "LABCTL_NOPYTHON"
VSCODE_GLIBC = (2, 28)  # the VS Code server needs glibc >= 2.28 (since VS Code 1.86)
PROBE_TIMEOUT = 180

# incontainer/tools/probe.sh runs under /bin/sh in the image: the glibc line from ldd,
# then probe.py under the image's Python; each prints its result after one of these marks.
@dataclass
class ImageFacts:
    """What the probe container reported (parsed, pure)."""

    glibc: tuple[int, int] | None = None
    libc_line: str = ""
    python: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, bool] = field(default_factory=dict)  # tar, bash: what VS Code needs
    home: tuple[str, str] | None = None  # the lab user's HOME and its owner

    @property
    def torch(self) -> str | None:
        return self.data.get("torch")


def parse_glibc(line: str) -> tuple[int, int] | None:
    """'ldd (Debian GLIBC 2.36-9+deb12u7) 2.36' -> (2, 36); musl or nothing -> None."""
    if not re.search(r"glibc|gnu libc", line, re.I):
        return None
    m = re.search(r"(\d+)\.(\d+)\s*$", line.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_probe(output: str) -> ImageFacts:
    facts = ImageFacts()
    for line in output.splitlines():
        if line.startswith(LDD_MARK):
            facts.libc_line = line[len(LDD_MARK):].strip()
            facts.glibc = parse_glibc(facts.libc_line)
        elif line.startswith("LABCTL_TOOL "):
            _, tool, have = line.split()[:3]
            facts.tools[tool] = have == "yes"
        elif line.startswith("LABCTL_HOME "):
            parts = line.split()
            if len(parts) >= 3 and parts[1] != "-":
                facts.home = (parts[1], parts[2])
        elif line.startswith(MARK):
            try:
                facts.data = json.loads(line[len(MARK):])
            except json.JSONDecodeError:
                continue
    libc = facts.data.get("libc") or []
    if facts.glibc is None and len(libc) == 2 and libc[0] == "glibc":
        m = re.match(r"(\d+)\.(\d+)", str(libc[1]))
        facts.glibc = (int(m.group(1)), int(m.group(2))) if m else None
    facts.python = facts.data.get("python")
    return facts


def glibc_finding(facts: ImageFacts) -> Finding:
    if facts.glibc is None:
        what = facts.libc_line or "no ldd"
        return Finding("warn", f"no glibc found ({what}): the VS Code server needs glibc >= "
                       "2.28", "use a Debian (bookworm) or Ubuntu (22.04+) base image")
    ver = f"{facts.glibc[0]}.{facts.glibc[1]}"
    if facts.glibc < VSCODE_GLIBC:
        return Finding("fail", f"glibc {ver}: the VS Code server needs >= 2.28",
                       "use a newer base image (debian:bookworm, ubuntu:22.04 or later)")
    return Finding("ok", f"glibc {ver} (VS Code needs >= 2.28)")


def vscode_finding(facts: ImageFacts) -> Finding:
    """Can VS Code's Dev Containers attach: glibc >= 2.28 for its server (since 1.86), tar
    and bash to install and run it, a HOME the lab user owns to install it in."""
    problems = []
    if facts.glibc is None or facts.glibc < VSCODE_GLIBC:
        have = f"{facts.glibc[0]}.{facts.glibc[1]}" if facts.glibc else "none"
        problems.append(f"glibc {have} (the VS Code server needs >= 2.28)")
    problems += [f"no {t}" for t, ok in sorted(facts.tools.items()) if not ok]
    if facts.home is None:
        problems.append("no user 'lab' with a HOME")
    elif facts.home[1] not in ("lab", "root"):
        problems.append(f"{facts.home[0]} belongs to {facts.home[1]}, not the lab user")
    if problems:
        return Finding("fail", "VS Code cannot attach: " + "; ".join(problems),
                       "build the lab with labctl (Debian bookworm base), or use a base with"
                       " glibc >= 2.28, tar and bash")
    return Finding("ok", "VS Code can attach (glibc >= 2.28, tar, bash, a HOME of the lab"
                   " user's)")


def torch_findings(facts: ImageFacts, spec: Any, name: str, gpus: tuple[Any, ...],
                   attached: bool, why_not: str) -> list[tuple[str, Finding]]:
    """(suffix, finding) pairs from what torch reported inside the image (pure)."""
    d = facts.data
    if not d:
        return [("torch", Finding("fail", "the probe printed nothing (no python in the "
                                  "image, or it crashed)", f"labctl build {name} --force"))]
    if "error" in d and not d.get("torch"):
        if spec is None or spec.torch is None:
            return [("torch", Finding("ok", f"no torch in the image ({d['error'][:80]})"))]
        return [("torch", Finding("fail", f"import torch failed: {d['error']}",
                                  f"rebuild the image: `labctl build {name} --force`"))]
    cuda = d.get("cuda")
    archs = compat.parse_torch_arch_list(d.get("archs") or [])
    out: list[tuple[str, Finding]] = []
    msg = f"torch {d.get('torch')}, CUDA {cuda or 'none (CPU build)'}, {archs.describe()}"
    if cuda and (d.get("disk") or {}).get("cuda"):
        msg += f"; its CUDA libraries take {human(d['disk']['cuda'])}"
    status, fix = "ok", ""
    if spec is not None and spec.torch is not None:
        want = torch_wheels.wheel_cuda(spec.torch.version, spec.torch.variant)
        want_cuda = compat.variant_cuda(want) if want else None
        have_version = str(d.get("torch", "")).split("+")[0]
        if have_version != spec.torch.version or (want_cuda or None) != (cuda or None):
            status = "warn"
            msg += (f"; the spec asks for torch {spec.torch.version}"
                    f"{'+' + want if want else ''}: the image is out of date")
            fix = f"rebuild it: `labctl build {name}`"
    out.append(("torch", Finding(status, msg, fix)))
    if cuda:
        for g in gpus:
            a = compat.assess(cuda, archs, g, f"torch {d.get('torch')}")
            text = "; ".join(a.problems if a.status == "fail" else a.notes)
            fix = "" if a.status == "ok" else (
                f"fix the spec (`labctl doctor {name}` says how), then `labctl build {name}`")
            out.append((f"gpu{g.index}", Finding(a.status, text, fix)))
    if not attached:
        out.append(("cuda", Finding("skip", f"torch.cuda.is_available() not tried: {why_not}")))
    elif d.get("available"):
        out.append(("cuda", Finding("ok", "torch.cuda.is_available() is True: "
                                    + ", ".join(d.get("devices") or []))))
    else:
        warn = "; ".join(d.get("warnings") or [])[:300]
        out.append(("cuda", Finding("fail", "torch.cuda.is_available() is False with the GPU "
                                    f"attached{': ' + warn if warn else ''}",
                                    "see the spec and GPU findings above")))
    return out


def tf_findings(facts: ImageFacts, spec: Any, gpus: tuple[Any, ...],
                attached: bool) -> list[tuple[str, Finding]]:
    """(suffix, finding) pairs from what TensorFlow reported inside the image (pure); none
    for an image without TensorFlow or a CPU spec."""
    tf = facts.data.get("tensorflow")
    if not tf or (spec is not None and compat.gpu_use(spec) == "no"):
        return []
    if "error" in tf:
        return [("tf", Finding("fail", f"import tensorflow failed: {tf['error']}",
                               "rebuild the image with `labctl build --force`"))]
    label = f"tensorflow {tf['version']}"
    archs = compat.parse_torch_arch_list(tf.get("archs") or [])
    out = [("tf", Finding("ok", f"{label}, CUDA {tf.get('cuda') or 'none'}, "
                          f"{archs.describe()}"))]
    if tf.get("cuda"):
        for g in gpus:
            a = compat.assess(tf["cuda"], archs, g, label)
            out.append((f"tf-gpu{g.index}", Finding(
                a.status, "; ".join(a.problems if a.status == "fail" else a.notes),
                "" if a.status == "ok" else "`labctl doctor` on the spec says what works")))
    if attached:
        seen = tf.get("gpus") or []
        out.append(("tf-cuda", Finding("ok", f"TensorFlow sees {', '.join(seen)}") if seen else
                    Finding("fail", "TensorFlow sees no GPU with the GPU attached",
                            "install tensorflow[and-cuda] (CUDA libraries from PyPI)")))
    return out


def trt_findings(facts: ImageFacts, spec: Any, name: str, gpus: tuple[Any, ...],
                 attached: bool) -> list[tuple[str, Finding]]:
    """(suffix, finding) pairs from what TensorRT reported inside the image (pure); none
    for an image without it whose spec does not ask for it."""
    trt = facts.data.get("tensorrt")
    if not trt:
        if spec is not None and spec.tensorrt:
            return [("tensorrt", Finding("fail", "the spec asks for TensorRT (tensorrt:), and "
                                         "the image has none: it is out of date",
                                         f"rebuild it: `labctl build {name}`"))]
        return []
    if "version" not in trt:
        return [("tensorrt", Finding("fail", f"import tensorrt failed: {trt.get('error')}",
                                     f"rebuild the image: `labctl build {name} --force`"))]
    label = f"TensorRT {trt['version']}"
    rel = tensorrt.release_of(trt["version"])
    out: list[tuple[str, Finding]] = []
    for g in gpus:
        if rel is None or g.cc is None:
            why = "not in labctl's table (tables/tensorrt.yaml)" if rel is None else \
                "of a GPU whose compute capability is unknown"
            f = Finding("warn", f"{label}: its support of {g.name} is unknown ({why})")
        elif not tensorrt.supports(rel, g.cc):
            f = Finding("fail", f"{label} has no code for {g.name} (CC {g.cc})",
                        f"`labctl doctor {name}` names a release that has")
        elif not attached or "builder" not in trt and "error" not in trt:
            why = "no GPU attached" if not attached else "torch sees no GPU"
            f = Finding("ok", f"{label} supports {g.name}; an engine builder was not tried"
                        f" ({why})")
        elif trt.get("builder"):  # probe.py tries on the first GPU
            f = Finding("ok", f"{label} supports {g.name}; it made an engine builder on the"
                        " first GPU")
        else:
            f = Finding("fail", f"{label} could not make an engine builder with the GPU "
                        f"attached: {trt.get('error', '?')}", "see the GPU findings above")
        out.append((f"tensorrt-gpu{g.index}", f))
    return out or [("tensorrt", Finding("ok", f"{label} (no GPU here to use it)"))]


def _image(ctx: Context) -> bool:
    return ctx.image


def image_probe(ctx: Context) -> list[Finding]:
    if ctx.lab is None:
        return [Finding("skip", "not in a lab folder: no images to check")]
    if ctx.engine is None:
        return [Finding("skip", "the engine does not answer (see engine.reachable)")]
    out: list[Finding] = []
    gpus = ctx.probe.gpus
    for name in ctx.spec_names():
        try:
            spec = ctx.spec(name)
        except LabError:
            spec = None
        tag = ctx.lab.image_tag(name)
        if ctx.engine.image(tag) is None:
            out.append(Finding("warn", f"{tag} is not built", f"labctl build {name}", name,
                               f"{name} image"))
            continue
        if not gpus:
            attach, why = "none", "no NVIDIA GPU on this machine"
        elif ctx.gpu_mode == "none":
            attach, why = "none", "the engine has no GPU runtime (see containers.gpu)"
        else:
            attach, why = ctx.gpu_mode, ""
        try:
            rc, text = ctx.engine.probe(tag, ["/bin/sh", "-c", resources.tool("probe.sh"), "sh",
                                              resources.tool("probe.py")],
                                        gpus=attach, timeout=PROBE_TIMEOUT)
        except LabError as e:
            out.append(Finding("fail", f"could not run a probe container: {e.message}",
                               e.fix or "", name, f"{name} image"))
            continue
        facts = parse_probe(text)
        if rc == 124:
            out.append(Finding("fail", f"the probe did not finish within {PROBE_TIMEOUT} s", "",
                               name, f"{name} image"))
            continue
        attached = attach != "none"
        for suffix, f in (torch_findings(facts, spec, name, gpus, attached, why)
                          + tf_findings(facts, spec, gpus, attached)
                          + trt_findings(facts, spec, name, gpus, attached)):
            out.append(Finding(f.status, f.message, f.fix, f"{name}.{suffix}",
                               f"{name} image: {suffix}"))
        g = glibc_finding(facts)
        out.append(Finding(g.status, g.message, g.fix, f"{name}.glibc", f"{name} image: glibc"))
        v = vscode_finding(facts)
        out.append(Finding(v.status, v.message, v.fix, f"{name}.vscode",
                           f"{name} image: VS Code"))
    return out or [Finding("skip", "the lab has no specs")]
