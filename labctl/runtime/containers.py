"""Which lab containers a command may act on: this lab folder's and this user's (their
labels say so), another lab's of yours by its exact container name, never another
user's. And the labs a killed labctl left running."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labctl import labels
from labctl.config.lab import Lab
from labctl.engine import Engine, endpoint
from labctl.errors import LabError
from labctl.runtime.plan import TOKEN_IN_CONTAINER


def my_uid(engine: Engine) -> int:
    """Who "you" are to this engine: this user here; on another machine's, the uid of the
    ssh login there (several students may share that engine, each their own login)."""
    if engine.is_local():
        return os.getuid()
    from labctl.runtime.remote import login_uid

    return login_uid()


def mine(engine: Engine, lab: Lab | None, *, all: bool = False,
         uid: int | None = None) -> list[Any]:
    """This user's lab containers (of this lab folder, when ``lab`` is given)."""
    uid = my_uid(engine) if uid is None else uid
    wanted = [labels.RUN, f"{labels.OWNER}={uid}"]
    if lab is not None:
        wanted.append(f"{labels.LAB}={lab.root}")
    return engine.containers(wanted, all=all)


def owner(container: Any) -> int | None:
    value = (container.labels or {}).get(labels.OWNER, "")
    return int(value) if value.isdigit() else None


def find(engine: Engine, name: str, lab: Lab | None, *, stopped: bool = False) -> Any | None:
    """A lab by exact container name (any lab of yours), or this lab's newest container of
    a spec name. ``stopped``: also containers kept with --keep that have ended."""
    uid = my_uid(engine)
    c = engine.container(name)
    if c is not None and labels.RUN in (c.labels or {}):
        if owner(c) not in (uid, None) and uid != 0:
            raise LabError(f"{name} is a lab of another user (uid {owner(c)})",
                           id="run.other-users-lab",
                           fix="labctl acts only on your own labs; ask its owner")
        if c.status == "running" or stopped:
            return c
    found = [c for c in mine(engine, lab, all=stopped) if c.labels.get(labels.SPEC) == name]
    found.sort(key=lambda c: c.attrs.get("Created", ""), reverse=True)  # newest first,
    found.sort(key=lambda c: c.status != "running")  # and running ones before those
    return found[0] if found else None


def foreground_label() -> str:
    """host:pid of this labctl, on a lab it will stop and remove itself."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(value: str) -> bool:
    host, _, pid = value.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's labctl: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphans(engine: Engine, lab: Lab | None) -> list[Any]:
    """Running labs of yours whose foreground labctl is gone (killed before it could stop
    them): they would run, and hold their port, forever."""
    wanted = [labels.RUN, labels.FOREGROUND] + ([f"{labels.LAB}={lab.root}"] if lab else [])
    gone = [c for c in engine.containers(wanted, all=False)
            if not _alive(c.labels[labels.FOREGROUND])]
    if not gone:  # the usual case: no need to ask who you are (an ssh round trip there)
        return []
    uid = str(my_uid(engine))
    return [c for c in gone if c.labels.get(labels.OWNER) == uid]


def token_sources(container: Any) -> list[str]:
    """The host files mounted as a lab's Jupyter token (the engine's word: a path to check
    before acting on it, see runtime.run.forget_token_file)."""
    return [m["Source"] for m in container.attrs.get("Mounts") or []
            if m.get("Destination") == TOKEN_IN_CONTAINER]


def token_of(container: Any) -> str | None:
    """The Jupyter token of one of your labs, read from its token file (never printed for
    a lab that is not yours: that file is in its owner's lab folder, 0700)."""
    sources = token_sources(container)
    if not sources:
        return None
    try:
        return Path(sources[0]).read_text(encoding="utf-8").strip()
    except OSError:
        return None


@dataclass(frozen=True)
class LabRow:
    """One lab of `labctl ps`: its URL carries the token, so a learner can click it."""

    name: str
    spec: str | None
    status: str
    url: str | None
    ports: list[str]  # HOST_IP:HOST_PORT->PORT/PROTO
    lab: str | None  # the lab folder it belongs to
    image: str
    engine: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Listing:
    """`labctl ps`: your labs, and the engine they run on."""

    engine: str
    rows: list[LabRow]


def listing(engine: Engine, lab: Lab | None, *, all: bool = False) -> Listing:
    """Your labs (of this lab folder, when ``lab`` is given; ``all``: stopped ones too)."""
    where = endpoint()[0]
    return Listing(where, [_row(c, where) for c in mine(engine, lab, all=all)])


def _row(c: Any, engine: str) -> LabRow:
    ports = c.attrs.get("NetworkSettings", {}).get("Ports") or {}
    url = c.labels.get(labels.URL)
    token = token_of(c) if url else None
    return LabRow(
        name=c.name, spec=c.labels.get(labels.SPEC), status=c.status,
        url=f"{url}?token={token}" if url and token else url,
        ports=[f"{b['HostIp']}:{b['HostPort']}->{p}" for p, bs in ports.items()
               for b in bs or []],
        lab=c.labels.get(labels.LAB),
        image=(c.image.tags or [c.image.id])[0] if c.image else "", engine=engine)


@dataclass(frozen=True)
class ShellUser:
    """Who `labctl shell` is in a running lab, and where it starts."""

    user: str  # uid:gid for docker exec --user
    home: str
    workdir: str


def shell_user(container: Any) -> ShellUser:
    """The lab's own user (its entrypoint's LABCTL_UID/GID, else the image's 1000), with
    that user's HOME: a shell as root in a lab run as you would leave root's files in
    your folders."""
    config = container.attrs["Config"]
    env = dict(x.split("=", 1) for x in config.get("Env") or [])
    uid = env.get("LABCTL_UID") or "1000"
    return ShellUser(user="0:0" if uid == "0" else f"{uid}:{env.get('LABCTL_GID', uid)}",
                     home="/root" if uid == "0" else "/home/lab",
                     workdir=config["WorkingDir"] or "/")
