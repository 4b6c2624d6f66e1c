"""`labctl base bootstrap`: make a Debian base image from a Debian mirror, for machines
that cannot pull from a registry (blocked or slow mirrors, offline classrooms)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl import labels
from labctl.config import validators
from labctl.errors import LabError

if TYPE_CHECKING:
    from labctl.engine import Engine

DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Like the official slim images: no docs, man pages or foreign locales.
_DPKG_EXCLUDES = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/info/*",
]


_SUITE = re.compile(r"[a-z][a-z0-9-]*")


def suite_of(image: str, suite: str | None) -> str:
    """The Debian suite: explicit, or the tag of a `debian:SUITE[-slim]` name, else bookworm."""
    if not suite:
        _, _, tag = image.rpartition(":")
        tag = tag.removesuffix("-slim")
        suite = tag if tag and tag not in ("latest", "slim") and "/" not in tag else "bookworm"
    if not _SUITE.fullmatch(suite):
        raise LabError(f"{suite!r} is not a Debian suite name",
                       id="base.bad-suite", fix="e.g. --suite bookworm")
    return suite


def check_mirror(mirror: str) -> str:
    try:
        return validators.url(mirror)
    except ValueError as e:
        raise LabError(f"--mirror: {e}",
                       id="base.bad-mirror", fix="e.g. --mirror http://deb.debian.org/debian"
                       ) from None


def pick_mirror(given: str | None, lab_mirror: str | None) -> str:
    """The mirror, with the precedence of `labctl build`: the command line, then labctl.yaml
    (which already holds LABCTL_APT_MIRROR when it sets none), then the default."""
    return check_mirror(given or lab_mirror or os.environ.get("LABCTL_APT_MIRROR")
                        or DEFAULT_MIRROR)


@dataclass(frozen=True)
class BaseImage:
    """What `labctl base bootstrap` left in the engine."""

    image: str
    image_id: str
    status: str  # present (kept: no --force) | built
    mirror: str | None = None  # the mirror it was made from (built)

    def as_dict(self) -> dict[str, str]:
        out = {"image": self.image, "image_id": self.image_id, "status": self.status}
        return out if self.mirror is None else {**out, "mirror": self.mirror}


def present(engine: Engine, image: str, force: bool) -> BaseImage | None:
    """``image`` as the engine has it, which `base bootstrap` keeps; None when there is
    none, or ``force`` replaces it."""
    found = engine.image(image)
    return None if found is None or force else BaseImage(image, found.id, "present")


def make(engine: Engine, image: str, suite: str | None, mirror: str,
         progress: Callable[[str], None]) -> BaseImage:
    """``image`` made from ``mirror`` (see bootstrap); ``suite`` None: from its tag."""
    image_id = bootstrap(engine, image, suite_of(image, suite), mirror, progress)
    return BaseImage(image, image_id, "built", mirror)


def plan(image: str, suite: str, mirror: str, tool: str, out: Path) -> list[list[str]]:
    """The commands that produce a root filesystem tarball at ``out`` (pure)."""
    if tool == "mmdebstrap":
        cmd = ["mmdebstrap", "--variant=minbase", "--format=tar", "--verbose"]
        cmd += [f"--dpkgopt={o}" for o in _DPKG_EXCLUDES]
        return [cmd + [suite, str(out), mirror]]
    root = out.with_suffix(".d")
    return [
        ["debootstrap", "--variant=minbase", suite, str(root), mirror],
        ["tar", "-C", str(root), "-cf", str(out), "."],
    ]


def pick_tool() -> str:
    if shutil.which("mmdebstrap"):
        return "mmdebstrap"
    if shutil.which("debootstrap") and os.geteuid() == 0:
        return "debootstrap"
    raise LabError(
        "neither mmdebstrap nor debootstrap is installed (debootstrap also needs root)",
        id="base.no-bootstrap-tool", fix="sudo apt-get install mmdebstrap",
    )


def bootstrap(
    engine: Engine,
    image: str,
    suite: str,
    mirror: str,
    progress: Callable[[str], None],
) -> str:
    """Build the root filesystem, import it as ``image``; returns the image id."""
    tool = pick_tool()
    with tempfile.TemporaryDirectory(prefix="labctl-base-") as tmp:
        out = Path(tmp) / "rootfs.tar"
        for cmd in plan(image, suite, mirror, tool, out):
            progress(f"$ {' '.join(cmd[:2])} ... {' '.join(cmd[-3:])}")
            _run_streaming(cmd, progress)
        size = out.stat().st_size
        progress(f"importing {size / 1e6:.0f} MB into the engine as {image}")
        changes = [
            'CMD ["bash"]',
            f'LABEL {labels.BOOTSTRAP}="{tool} {suite} {mirror}"',
        ]
        with out.open("rb") as f:
            engine.import_image(f, image, changes)
    img = engine.image(image)
    if img is None:
        raise LabError(f"the import finished but {image} is not in the engine",
                       id="base.import-failed")
    return img.id


def _run_streaming(cmd: list[str], progress: Callable[[str], None]) -> None:
    tail: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout
    for line in proc.stdout:
        line = line.rstrip()
        if not line:
            continue
        tail = (tail + [line])[-15:]
        if line.startswith(("I:", "W:", "E:")):
            progress(line)
    if proc.wait() != 0:
        raise LabError(
            f"{cmd[0]} failed (exit {proc.returncode})",
            id="base.bootstrap-failed", details=tail,
            fix="check that the mirror answers (--mirror URL) and the suite exists (--suite)",
        )
