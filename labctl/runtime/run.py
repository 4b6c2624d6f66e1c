"""Start, watch and stop lab containers from a RunPlan."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from labctl import labels, resources
from labctl.config.lab import Lab
from labctl.engine import Bind, ContainerSpec, Engine
from labctl.errors import LabError
from labctl.gpu.access import gpu_mode
from labctl.image.layers import ENTRYPOINT, ENTRYPOINT_FILE, ENTRYPOINT_PATH
from labctl.runtime import containers, remote
from labctl.runtime.plan import (
    LAB_UID,
    HostFacts,
    RunPlan,
    RunRequest,
    next_name,
    plan_run,
    url_host,
)
from labctl.runtime.ports import port_free
from labctl.runtime.remote import discover, split_srcs

READY_TIMEOUT = 120.0


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _token_file(lab: Lab, token: str, name: str | None = None) -> Path:
    """The token in a file of its own, in a folder only the user can enter: mounted into
    the lab (JUPYTER_TOKEN_FILE), it never appears in the container's configuration. 0600:
    the lab reads it as the host user (see _readable_by_image_user for the other case)."""
    return _write_token(lab.state_dir("tokens") / (name or f"{secrets.token_hex(8)}.token"),
                        token)


def _write_token(path: Path, token: str) -> Path:
    """``token`` in a new file ``path``, 0600 (never through a link, never over a file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return path


def _readable_by_image_user(plan: RunPlan, uid: int) -> None:
    """Without --user the lab runs as the image's uid, which reads the token only when it
    is the host user's or the file is world-readable; it is then, inside the 0700 folder
    that no other account can enter (Lab.state_dir)."""
    if plan.user_mode == "image" and uid != LAB_UID and plan.token_file is not None:
        plan.token_file.chmod(0o644)


def forget_token_file(lab_root: str | Path, source: str | Path) -> None:
    """Remove a stopped lab's token file: only a file of the user's in that lab's own
    tokens folder (a container's mounts are the engine's word, not labctl's)."""
    path = Path(source)
    with contextlib.suppress(OSError):
        st = path.lstat()
        if path.parent.resolve() == (Path(lab_root) / ".labctl" / "tokens").resolve() \
                and stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            path.unlink()


def kept_token_file(lab: Lab, name: str) -> Path:
    """A token file that stays between runs (a devcontainer, a Compose service)."""
    path = lab.state_dir("tokens") / name
    return path if path.exists() else _token_file(lab, secrets.token_hex(24), name)


def _pulled(engine: Engine, lab: Lab, name: str, image: str) -> bool:
    """A lab not built here comes from the lab's registry when it holds this very spec."""
    from labctl.image.build import from_registry
    from labctl.image.render import render

    return lab.settings.registry is not None and from_registry(
        engine, lab, render(lab, lab.spec(name)), image) is not None


def make_plan(engine: Engine, lab: Lab, name: str, request: RunRequest) -> RunPlan:
    """The plan of `labctl run NAME` as ``request`` asks; its ``token_file``: a token kept
    between runs (the devcontainer's), instead of a new one. On an engine of another machine
    the plan is that machine's (runtime.remote); ``sync`` copies the --src folders there
    and back."""
    spec = lab.spec(name)
    image = lab.image_tag(name)
    if engine.image(image) is None and not _pulled(engine, lab, name, image):
        raise LabError(f"the image {image} is not built yet",
                       id="run.not-built", fix=f"labctl build {name}")
    there = discover(engine, lab)
    if request.sync and there is None:
        raise LabError("--sync copies folders to an engine on another machine; this engine"
                       " is on this one", id="run.sync-local-engine",
                       fix="drop --sync: your folder is mounted as it is")
    srcs = list(request.srcs)
    local, elsewhere = split_srcs(srcs, request.sync) if there else (srcs, [])
    kept = request.token_file
    runs_jupyter = bool(spec.jupyter and spec.jupyter.enabled and not request.command)
    # This run's own token file is written once the plan holds (there: made by the engine).
    fresh = (lab.state_dir("tokens") / f"{secrets.token_hex(8)}.token"
             if runs_jupyter and kept is None else None)
    token = (kept.read_text(encoding="utf-8").strip() if kept else
             os.environ.get("JUPYTER_TOKEN") or None)
    plan = plan_run(lab, spec, replace(request, srcs=tuple(local), there=tuple(elsewhere),
                                       token=token, token_file=kept or fresh),
                    _host_facts(engine, there))
    if there is None and fresh is not None and plan.token is not None:
        _write_token(fresh, plan.token)
        _readable_by_image_user(plan, os.getuid())
    if there is not None:
        remote.place(plan, lab, spec, there, local)
    return plan


def _host_facts(engine: Engine, there: remote.Remote | None) -> HostFacts:
    """This machine's facts, and the engine's: the learner's uid is that of their login on
    the engine's machine when it is another one."""
    uid, gid = (there.uid, there.gid) if there else (os.getuid(), os.getgid())
    return HostFacts(uid=uid, gid=gid, home=Path.home(), rootless=engine.is_rootless(),
                     gpu_access=gpu_mode(engine), has_ipv6_loopback=has_ipv6_loopback(),
                     port_free=port_free, name_taken=lambda n: engine.container(n) is not None)


def env_token_file(path: Path) -> Path:
    """``path`` (an env file in .labctl/) holding JUPYTER_TOKEN, 0600: made with a new
    token, or one that came with the folder tightened; refused when it is a link or
    another account's."""
    try:
        have = path.lstat()
    except FileNotFoundError:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"JUPYTER_TOKEN={secrets.token_hex(24)}\n")
        return path
    if not stat.S_ISREG(have.st_mode) or have.st_uid != os.geteuid():
        raise LabError(f"{path} is a link, not a file, or another account's",
                       id="run.bad-token-file",
                       fix=f"remove it (`rm {path}`); labctl writes a new token there")
    if have.st_mode & 0o077:
        path.chmod(0o600)
    return path


def compose_plans(engine: Engine, lab: Lab, names: list[str]) -> dict[str, RunPlan]:
    """The plans of `labctl run NAME --user` for one Compose file: each lab's ports free
    now and apart from the others'; no token file (the services read the env file)."""
    plans: dict[str, RunPlan] = {}
    taken: set[int] = set()
    for name in names:
        plan = make_plan(engine, lab, name, RunRequest(user=True, gpus="none",
                                                       taken_ports=frozenset(taken)))
        taken |= set(plan.ports.values())
        if plan.token_file is not None:
            plan.token_file.unlink(missing_ok=True)
        create_host_dirs(plan.host_dirs)
        plans[name] = plan
    return plans


def create_host_dirs(paths: list[Path]) -> list[Path]:
    """Make the lab's folders as the invoking user (never by the engine as root). Existing
    folders and their contents are left exactly as they are."""
    made = []
    for p in paths:
        if not p.exists():
            p.mkdir(parents=True, exist_ok=True)
            made.append(p)
        elif not p.is_dir():
            raise LabError(f"{p} exists but is not a folder", id="run.host-dir-not-folder",
                           fix="move that file away, or point volumes.yaml elsewhere")
    return made


def create(engine: Engine, plan: RunPlan, *, tty: bool = False, foreground: bool) -> Any:
    """The plan's container, under the next free name if two labs start at once; a
    foreground one says which labctl will remove it (`labctl ps` tells orphans)."""
    if plan.remote is not None:
        remote.make_folders(engine, plan)
        # The mount points in a --sync folder (runtime.mounts) go in with its copy.
        create_host_dirs([d for d in plan.src_dirs
                          if any(h == d or h in d.parents for h, _ in plan.syncs)])
        remote.sync_in(engine, plan)
    else:
        create_host_dirs(plan.host_dirs)
    if foreground:
        plan.labels[labels.FOREGROUND] = containers.foreground_label()
    container = engine.create_container(container_spec(plan, tty),
                                        next_name=next_name(plan.name_base or plan.name))
    plan.name = container.name  # the next free one, when two labs started at once
    try:
        _check_entrypoint(engine, container, plan)
    except BaseException:
        engine.remove_container(container)
        raise
    return container


def container_spec(plan: RunPlan, tty: bool = False) -> ContainerSpec:
    """The plan in the engine adapter's plain values."""
    return ContainerSpec(
        image=plan.image, command=plan.command, name=plan.name, env=plan.env,
        binds=[Bind(str(m.source), m.target, m.read_only, m.volume) for m in plan.mounts],
        publish=plan.publish(), workdir=plan.workdir, labels=plan.labels, gpus=plan.gpus,
        shm_size=plan.shm_size, network=plan.network, tty=tty)


def _check_entrypoint(engine: Engine, container: Any, plan: RunPlan) -> None:
    """Fail closed: the lab starts as root and only labctl's entrypoint drops that. An
    image whose entrypoint is not labctl's (a spec's step or the image's maker changed it:
    a bundle's image is someone else's) never starts as anyone but root on its own.
    A tripwire, not a sandbox: the entrypoint runs the image's own gosu/tini, so an image
    from someone else is trusted as far as its maker is (the README's threat model)."""
    if plan.user_mode == "root":  # root already (a root host user, or rootless Docker)
        return
    ours = (resources.incontainer_dir() / "image" / ENTRYPOINT_FILE).read_bytes()
    container.reload()
    entry = (container.attrs.get("Config") or {}).get("Entrypoint")
    if entry != ENTRYPOINT or engine.file_of(container, ENTRYPOINT_PATH) != ours:
        raise LabError(f"{plan.image} does not start through this labctl's entrypoint"
                       " (built by another labctl version, or a step of its spec or whoever"
                       " built it replaced it): labctl does not start it, since it could"
                       " run as root on your files", id="run.foreign-entrypoint",
                       fix=f"rebuild it (`labctl build {plan.spec}`: an image of an older"
                           " labctl only needs that); a spec's steps must not write to "
                           + ENTRYPOINT_PATH)


def wait_ready(engine: Engine, container: Any, plan: RunPlan,
               timeout: float = READY_TIMEOUT) -> None:
    """Wait until Jupyter answers on its published port, or through the plan's SSH
    forward (GET /api needs no token)."""
    assert plan.jupyter_port is not None
    where = (f"127.0.0.1:{plan.forward_port}" if plan.forward_port is not None else
             f"{url_host(plan.bind[0])}:{plan.ports[plan.jupyter_port]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            logs = container.logs(tail=15).decode(errors="replace").splitlines()
            raise LabError(f"the lab {plan.name} stopped while starting",
                           id="run.stopped-starting", details=logs,
                           fix=f"see `labctl logs {plan.name}`; `labctl doctor {plan.spec}`")
        try:
            if requests.get(f"http://{where}/api", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise LabError(f"Jupyter in {plan.name} did not answer within {timeout:.0f}s",
                   id="run.jupyter-timeout",
                   fix=f"see `labctl logs {plan.name}`")


def run(engine: Engine, plan: RunPlan, *, detach: bool, keep: bool,
        say: Callable[[str], None], on_ready: Callable[[RunPlan], None] = lambda p: None
        ) -> int:
    """Start the lab. Foreground: stream its output until it ends or Ctrl-C, then remove
    it; the command's exit code is returned. Detached: return once it is ready."""
    interactive = not detach and plan.jupyter_port is None and sys.stdin.isatty()
    say = _never_raises(say)
    fresh = [d for d in plan.src_dirs if not d.exists()] if plan.remote is None else []
    container = create(engine, plan, tty=interactive, foreground=not detach)
    if fresh:  # said once: the next run finds them
        say(f"note: made empty folders in your folder, where the lab's shared folders are"
            f" mounted: {', '.join(str(d) for d in fresh)}")
    try:
        with ExitStack() as stack:
            if interactive:
                return engine.attach_cli(container)
            engine.start(container)
            if plan.jupyter_port is not None:
                _announce(engine, container, plan, stack, detach, say)
            on_ready(plan)
            if detach:
                say(f"running in the background as {plan.name}; stop it with "
                    f"`labctl stop {plan.name}`")
                return 0
            for chunk in container.logs(stream=True, follow=True):
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            return int(container.wait().get("StatusCode", 1))
    except (KeyboardInterrupt, BrokenPipeError) as e:  # Ctrl-C, or `| tee` ended first
        if isinstance(e, BrokenPipeError):  # nothing more reaches the pipe, nor an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        with _shielded():
            say(f"stopping {plan.name}")
            engine.stop_container(container, timeout=5)
        return 130
    except BaseException:
        if detach:  # a lab that failed to start is not left behind
            with _shielded():
                engine.remove_container(container)
        raise
    finally:
        if not detach:
            with _shielded():
                teardown(engine, container, Leftovers.of_plan(plan), say, keep=keep)


def _never_raises(say: Callable[[str], None]) -> Callable[[str], None]:
    """``say`` that cannot stop a clean-up: a closed pipe (rich exits on one) is silence."""
    def quiet(message: str) -> None:
        with contextlib.suppress(OSError, SystemExit):
            say(message)
    return quiet


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """A clean-up that a second Ctrl-C (or the SIGTERM of a closing terminal) does not cut
    short: the container is removed whatever else arrives meanwhile."""
    try:
        old = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]
    except ValueError:  # not the main thread: nothing to shield
        yield
        return
    try:
        yield
    finally:
        for sig, handler in zip((signal.SIGINT, signal.SIGTERM), old, strict=True):
            signal.signal(sig, handler)


def _announce(engine: Engine, container: Any, plan: RunPlan, stack: ExitStack,
              detach: bool, say: Callable[[str], None]) -> None:
    """Wait for Jupyter and say its URLs; on an ssh:// engine through a port forward
    labctl holds while it runs (a detached lab gets the command that makes one)."""
    assert plan.jupyter_port is not None
    port = plan.ports[plan.jupyter_port]
    ssh = plan.remote.ssh if plan.remote is not None else None
    say(f"waiting for Jupyter in {plan.name} ...")
    if ssh is not None:
        plan.forward_port = stack.enter_context(
            remote.forward(ssh, port, url_host(plan.bind[0])))
    wait_ready(engine, container, plan)
    if ssh is not None:
        if detach:
            say(f"JupyterLab is ready on {ssh.host}; reach it with `ssh -N -L"
                f" {plan.forward_port}:127.0.0.1:{port} {' '.join(ssh.args())}`, then:")
        else:
            say(f"JupyterLab is ready on {ssh.host}, here through ssh -L"
                f" {plan.forward_port}:127.0.0.1:{port}:")
        say(f"  {plan.url}")
    else:
        say(f"JupyterLab is ready: {plan.url}")
    if plan.tensorboard_url:
        say(f"TensorBoard (logs in $TENSORBOARD_LOGDIR): {plan.tensorboard_url}")
    if plan.tensorboard_url:  # jupyter-server-proxy: any port, behind Jupyter's token
        say("Web apps you start in the lab (Gradio: 7860), never published on a port: "
            + plan.tensorboard_url.replace("/tensorboard/", "/proxy/7860/"))


@dataclass(frozen=True)
class Leftovers:
    """What a lab leaves besides its container: its --sync volumes (whose files come
    back), the volumes a check's scripts were copied into, and its Jupyter token file."""

    image: str  # the image a throw-away container reads a volume back with
    syncs: list[tuple[Path, str]]
    copies: list[tuple[Path, str]] = field(default_factory=list)
    token_file: Path | None = None  # this run's own file: removed as it is
    # (lab folder, token file) as a container's labels and mounts say: the engine's word,
    # so removed only where forget_token_file finds it is the user's own
    mounted: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of_plan(cls, plan: RunPlan) -> Leftovers:
        return cls(plan.image, plan.syncs, plan.copies, plan.token_file)

    @classmethod
    def of_container(cls, container: Any) -> Leftovers:
        """A lab labctl no longer holds the plan of (detached, or kept with --keep)."""
        lab_root = (container.labels or {}).get(labels.LAB, "")
        return cls(container.attrs["Config"]["Image"], remote.syncs_of(container),
                   mounted=tuple((lab_root, s) for s in containers.token_sources(container)))

    def forget_tokens(self) -> None:
        if self.token_file is not None:
            self.token_file.unlink(missing_ok=True)
        for lab_root, source in self.mounted:
            forget_token_file(lab_root, source)


def teardown(engine: Engine, container: Any, left: Leftovers, say: Callable[[str], None],
             *, keep: bool = False) -> None:
    """The one end of a lab, for a foreground run, a check and `labctl stop` alike: the
    container goes, then its token file, then its --sync volumes' files come back (only
    once it is gone: nothing writes to them any more). ``keep``: the container stays
    (`labctl logs` reads it), and so do the volumes once their files are back (`labctl
    stop` copies them back again, then drops them)."""
    if not keep:
        engine.remove_container(container)
        left.forget_tokens()
    remote.sync_back(engine, left.image, left.syncs, say, left.copies, drop=not keep)


@dataclass(frozen=True)
class Stopped:
    """`labctl stop`: the containers it stopped and removed."""

    names: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"stopped": self.names}


def stop_labs(engine: Engine, lab: Lab | None, names: tuple[str, ...], *, all_: bool,
              say: Callable[[str], None],
              on_stopped: Callable[[str], None] = lambda n: None) -> Stopped:
    """Stop and remove labs ``names`` (container or spec names; ``all_``: every one of this
    lab folder), each as a foreground run ends. Every name is found before any lab stops,
    so a typo stops none; ``on_stopped`` hears each as it goes."""
    if all_ and lab is None:
        raise LabError("--all stops the labs of a lab folder, and this is none",
                       id="cli.no-lab-folder",
                       fix="run it in a lab folder (or pass --lab DIR), or name the labs")
    targets = containers.mine(engine, lab, all=True) if all_ else []
    for n in names:
        c = containers.find(engine, n, lab, stopped=True)
        if c is None:
            raise LabError(f"no lab named {n}", id="cli.no-such-lab", fix="see `labctl ps --all`")
        targets.append(c)
    stopped = []
    for c in targets:
        engine.stop_container(c)
        teardown(engine, c, Leftovers.of_container(c), say)
        stopped.append(c.name)
        on_stopped(c.name)
    return Stopped(stopped)


def shell(engine: Engine, lab: Lab | None, name: str, *, user: bool) -> int:
    """`labctl shell`: a login shell in running lab ``name`` as the lab's own user, or else
    in a new foreground lab of spec ``name`` (``user``: as you), removed when it ends. The
    shell's exit code."""
    c = containers.find(engine, name, lab)
    if c is not None:
        who = containers.shell_user(c)
        return engine.exec_cli(c, ["bash", "-l"], who.user, who.workdir, {"HOME": who.home})
    if lab is None:
        raise LabError(f"no running lab named {name}, and no lab folder to start one from",
                       id="cli.no-running-lab", fix="see `labctl ps`, or run this in a lab folder")
    plan = make_plan(engine, lab, name, RunRequest(user=user, command=("bash", "-l")))
    return run(engine, plan, detach=False, keep=False, say=lambda m: None)
