"""The BuildKit build backend: the docker CLI, since the docker SDK cannot drive BuildKit
(docker/docker-py#2230) - `docker buildx build` where the buildx plugin is there, else
`DOCKER_BUILDKIT=1 docker build` of a docker CLI that has BuildKit built in (before 23).

The build gets the context as a folder (BuildKit sends only what changed), the index
credentials as a secret, the wheelhouse as a folder of that context that RUN steps bind
mount, uv's and apt's caches as cache mounts (layers.py writes the mounts); the plain
progress it prints is read back into labctl's BuildEvents."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from labctl.errors import LabError
from labctl.image.events import BuildEvent

_STEP = re.compile(r"^#(\d+) \[(?:[\w.-]+ )?\s*(\d+)/(\d+)\] (.*)$")
_OUT = re.compile(r"^#(\d+) \d+\.\d+ (.*)$")
_DONE = re.compile(r"^#(\d+) (DONE \d+\.\d+s|CACHED)$")
_ERROR = re.compile(r"^#(\d+) ERROR: (.*)$")
_CONTEXT = re.compile(r"^#(\d+) transferring context: ([\d.]+)([kMG]?B)")
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
_STEPS = ("FROM", "RUN", "COPY", "ADD", "WORKDIR")  # what BuildKit numbers as steps


@dataclass(frozen=True)
class Cli:
    """How to ask a docker CLI for a BuildKit build."""

    argv: tuple[str, ...]  # e.g. ("/usr/bin/docker", "build")
    env: tuple[tuple[str, str], ...]  # e.g. (("DOCKER_BUILDKIT", "1"),)
    version: str

    @property
    def name(self) -> str:
        return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(self.argv))


def _out(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@cache
def find_cli() -> Cli | None:
    """A docker CLI that can run a BuildKit build against the engine, or None."""
    seen: list[str] = []
    for exe in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"):
        if not exe or not os.access(exe, os.X_OK) or os.path.realpath(exe) in seen:
            continue
        seen.append(os.path.realpath(exe))
        version = _out([exe, "version", "--format", "{{.Client.Version}}"]) or ""
        if _out([exe, "buildx", "version"]):
            return Cli((exe, "buildx", "build"), (), version)
        major = re.match(r"(\d+)", version)
        if major and int(major[1]) < 23:  # the classic CLI, BuildKit behind an env var
            return Cli((exe, "build"), (("DOCKER_BUILDKIT", "1"),), version)
    return None


@dataclass
class Progress:
    """What BuildKit's plain progress has said: the step of each vertex, its output, and
    how long each step took (the benchmark's per-step breakdown)."""

    ops: list[tuple[str, str]]  # (instruction, spec key) of each step BuildKit counts
    steps: dict[int, int] = field(default_factory=dict)  # vertex -> step number
    current: int = 0
    total: int = 0
    cached: list[int] = field(default_factory=list)
    seconds: dict[int, float] = field(default_factory=dict)  # step -> seconds
    output: dict[int, list[str]] = field(default_factory=dict)  # step -> its last lines
    error_step: int = 0
    errors: list[str] = field(default_factory=list)
    sent: dict[int, int] = field(default_factory=dict)  # vertex -> context bytes so far

    @property
    def context_bytes(self) -> int | None:
        """What the CLI sent of the context (from a kept folder: what changed); None where
        its progress did not say."""
        return sum(self.sent.values()) if self.sent else None

    def key(self, step: int) -> str:
        return self.ops[step - 1][1] if 0 < step <= len(self.ops) else ""

    def instruction(self, step: int) -> str:
        return self.ops[step - 1][0] if 0 < step <= len(self.ops) else ""


def steps_of(instructions: list[str], keys: list[str]) -> list[tuple[str, str]]:
    """The instructions BuildKit numbers [n/m] (FROM, RUN, COPY, ADD, WORKDIR) with their
    spec keys; ``instructions`` without comments, as ``keys`` counts them."""
    return [(i, k) for i, k in zip(instructions, keys, strict=True)
            if i.split(maxsplit=1)[0].upper() in _STEPS]


def feed(p: Progress, line: str, on_event: Callable[[BuildEvent], None]) -> None:
    if m := _CONTEXT.match(line):  # .dockerignore, then the context; the last line counts
        p.sent[int(m[1])] = int(float(m[2]) * _UNITS[m[3]])
    elif m := _STEP.match(line):
        vertex, step, total = int(m[1]), int(m[2]), int(m[3])
        p.steps[vertex], p.current, p.total = step, step, total
        on_event(BuildEvent("step", m[4], step, total, p.key(step)))
    elif m := _DONE.match(line):
        step = p.steps.get(int(m[1]))
        if step is None:
            return
        if m[2] == "CACHED":
            p.cached.append(step)
            on_event(BuildEvent("cached", "CACHED", step, p.total))
        else:
            p.seconds[step] = float(m[2].split()[1].rstrip("s"))
    elif m := _ERROR.match(line):
        p.error_step = p.steps.get(int(m[1]), p.current)
        p.errors.append(m[2])
    elif m := _OUT.match(line):
        step = p.steps.get(int(m[1]))
        if step is not None:
            p.output[step] = (p.output.get(step, []) + [m[2]])[-25:]
            on_event(BuildEvent("output", m[2], step, p.total, p.key(step)))
    elif line.startswith(("error:", "ERROR:", "failed to solve", "executor failed")):
        p.errors.append(line)


@contextmanager
def context_folder(files: dict[str, bytes], dockerfile: str, wheelhouse: Path | None,
                   folder: Path) -> Iterator[Path]:
    """``folder`` made the build context and kept for the next build: BuildKit sends a
    context again only where a file's size or mtime changed, keyed by the folder's path,
    so a rebuild sends the changed spec files, not the wheelhouse (hundreds of MB) again.
    What the build does not have is removed first (links too: nothing is written through
    one); files are rewritten only when their bytes differ; the wheelhouse's wheels are
    hard links (copies across file systems). A lock (build/.locks/SPEC) makes a second
    build of the same spec wait for the first."""
    locks = folder.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / folder.name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = {**files, "Dockerfile": dockerfile.encode()}
        wheels = sorted(wheelhouse.glob("*.whl")) if wheelhouse is not None else []
        keep = {*wanted, *(f"wheelhouse/{w.name}" for w in wheels)}
        folder.mkdir(parents=True, exist_ok=True)
        _prune(folder, keep)
        (folder / "wheelhouse").mkdir(exist_ok=True)  # the bind mount's source, if empty
        for name, data in wanted.items():
            _put(folder / name, data, 0o755 if name.endswith(".sh") else 0o644)
        for wheel in wheels:
            _link(wheel, folder / "wheelhouse" / wheel.name)
        # COPY keeps a context folder's mode: under a umask of 077 /opt/labctl/lib/hooks
        # would be a 0700 root folder the lab user cannot enter.
        for path in (folder, *folder.rglob("*")):
            if path.is_dir() and path.stat().st_mode & 0o777 != 0o755:
                path.chmod(0o755)
        yield folder


def _put(dest: Path, data: bytes, mode: int) -> None:
    try:
        st = dest.stat()  # read back only what could be the same
        if st.st_size == len(data) and st.st_mode & 0o777 == mode and dest.read_bytes() == data:
            return
        dest.unlink()
    except FileNotFoundError:
        dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    dest.chmod(mode)


def _link(wheel: Path, dest: Path) -> None:
    src = wheel.stat()
    try:
        have = dest.stat()
        if (have.st_ino, have.st_dev) == (src.st_ino, src.st_dev):
            return  # the same file
        if have.st_dev != src.st_dev and (have.st_size, have.st_mtime_ns) == (
                src.st_size, src.st_mtime_ns):
            return  # a copy across file systems (what BuildKit compares too)
        dest.unlink()
    except FileNotFoundError:
        pass
    try:
        os.link(wheel, dest)
    except OSError:
        shutil.copy2(wheel, dest)  # keeps the mtime, so the next build finds it unchanged


def _prune(folder: Path, keep: set[str]) -> None:
    """Remove what is not in ``keep`` (paths relative to ``folder``, their folders
    implied), links whatever they point at, and a file where a folder is wanted or the
    other way round; deepest first."""
    dirs = {"wheelhouse"} | {str(p) for k in keep for p in Path(k).parents}
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink() or (path.is_file() and rel not in keep):
            path.unlink()
        elif path.is_dir() and rel not in dirs:
            shutil.rmtree(path)


def run(cli: Cli, folder: Path, *, buildargs: dict[str, str], secrets: dict[str, bytes],
        nocache: bool, progress: Progress, on_event: Callable[[BuildEvent], None],
        network: str = "default") -> str:
    """Build ``folder``; the image id. Nothing is tagged: the caller tags a success. Ctrl-C
    stops the CLI, and BuildKit cancels the build with it."""
    with tempfile.TemporaryDirectory(prefix="labctl-bk-") as tmp:
        os.chmod(tmp, 0o700)
        iid = Path(tmp) / "iid"
        cmd = [*cli.argv, "--progress=plain", "--iidfile", str(iid)]
        for key, value in buildargs.items():
            cmd += ["--build-arg", f"{key}={value}"]
        for sid, data in secrets.items():
            src = Path(tmp) / sid
            fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            cmd += ["--secret", f"id={sid},src={src}"]
        if nocache:
            cmd.append("--no-cache")
        if network != "default":
            cmd.append(f"--network={network}")
        cmd.append(str(folder))
        env = {**os.environ, **dict(cli.env)}
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, env=env, errors="replace")
        except OSError as e:
            raise LabError(f"cannot run {cli.argv[0]}: {e}",
                           id="build.cannot-run-cli",
                           fix="labctl build --builder classic") from None
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                feed(progress, line.rstrip("\n"), on_event)
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
            raise
        if code != 0:
            if not progress.errors:
                progress.errors.append(f"{cli.name} exited with status {code}")
            return ""
        return iid.read_text().strip() if iid.exists() else ""
