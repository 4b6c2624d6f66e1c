"""Validators for every spec value that can reach a Dockerfile or a requirements file.

Each returns the value unchanged or raises ValueError with a message that says what
is allowed; pydantic turns that into a one-line error naming the file and key.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Debian policy: lower case letters, digits, + - . ; at least two chars, starts alnum.
_APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")
# A docker image reference: [registry[:port]/]path[:tag][@digest], lower-case path.
_IMAGE_REF = re.compile(
    r"^(?:(?=[^/]*[.:]|localhost/)[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ABS_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
# No shell metacharacters ($ ; & ( ) ! * # quotes, spaces): a URL may reach a RUN line.
_URL = re.compile(r"^(https?|file)://[A-Za-z0-9._~:/?@%+=,-]+$")
_PY = re.compile(r"^3\.[0-9]{1,2}$")
_VARIANT = re.compile(r"^(default|auto|cpu|cu[0-9]{3}|rocm[0-9.]+)$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# A relative path inside a folder: no '..', no leading '/' or '~'.
_REL_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*(/[A-Za-z0-9_][A-Za-z0-9_.@+-]*)*/?")
_PROXY = re.compile(r"^(https?|socks5h?)://[A-Za-z0-9._~:/?@%+=,\[\]-]+$")
_NO_PROXY = re.compile(r"^[A-Za-z0-9._*:/,\[\] -]*$")
# A repository prefix for tags: [registry[:port]/]path/ (lower-case path components).
_TAG_PREFIX = re.compile(
    r"^(?:(?=[^/]*[.:]|localhost/)[a-zA-Z0-9.-]+(?::[0-9]+)?/)?(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*"
    r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*[/_.-]?)?$"
)
_REL_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.(sh|py)")
# Every pattern is applied with fullmatch: re.match's `$` also matches before a trailing
# newline, which would let "git\n" through and split a Dockerfile line.


def no_control(value: str) -> str:
    """Reject newlines and other control characters anywhere."""
    if _CONTROL.search(value):
        raise ValueError("must be a single line (no newline, tab or control character)")
    return value


def quoted_value(value: str) -> str:
    """A free-text value (env, label) that is rendered inside double quotes."""
    no_control(value)
    if value.endswith("\\"):
        raise ValueError("must not end with a backslash (a Dockerfile line continuation)")
    for q in ('"', "'"):
        if value.count(q) % 2:
            raise ValueError(f"has an unbalanced {q} quote")
    return value


def plain_value(value: str) -> str:
    """A value that reaches a container's environment as it is (`docker run -e`): nothing
    would expand a $NAME in it."""
    no_control(value)
    if "$" in value:
        raise ValueError("must not contain '$': nothing expands it here; write the value out")
    return value


def apt_package(value: str) -> str:
    if not _APT_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Debian package name (lower-case letters, digits, '+', '-', '.';"
            " optionally '=VERSION')"
        )
    return value


def requirement(value: str) -> str:
    """A PEP 508 requirement, one per line of a requirements file, no pip options."""
    no_control(value)
    if value.lstrip().startswith("-"):
        raise ValueError(f"{value!r} is a pip option, not a package; use the spec's keys instead")
    try:
        Requirement(value)
    except InvalidRequirement as e:
        raise ValueError(f"{value!r} is not a valid PEP 508 requirement ({e})") from None
    return value


def image_ref(value: str) -> str:
    if len(value) > 255 or not _IMAGE_REF.fullmatch(value):
        raise ValueError(f"{value!r} is not a docker image reference like 'debian:bookworm'")
    return value


def env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return value


def abs_path(value: str) -> str:
    if not _ABS_PATH.fullmatch(value):
        raise ValueError(f"{value!r} must be an absolute container path of [A-Za-z0-9._/@+-]")
    parts = value.strip("/").split("/")
    if value.strip("/") == "" or ".." in parts:
        raise ValueError(f"{value!r} must name a folder below / without '..'")
    return value


LAB_HOME = "/home/lab"
# Folders of the system. In a container, a mount at or inside one hides the image's own
# files (and the entrypoint must never re-own what is there). On the host, a lab must not
# be given the system's trees, nor one of the folders that hold everyone's files.
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                "/proc", "/sys", "/dev", "/boot", "/run")
CONTAINER_TREES = (*SYSTEM_TREES, "/var", "/tmp", "/opt", "/root")
HOST_TREES = (*SYSTEM_TREES, "/var/lib", "/var/log", "/var/spool")
HOST_TOPS = ("/var", "/tmp", "/var/tmp", "/opt", "/root", "/home", "/srv", "/mnt", "/media")
# Environment names labctl sets itself: the entrypoint's user and workspace, the lab user's
# name and home. PATH is allowed when it keeps the image's own ($PATH).
RESERVED_ENV_PREFIX = "LABCTL_"
RESERVED_ENV = ("HOME", "USER", "LOGNAME")


def system_folder(path: str, *, host: bool = False) -> str | None:
    """The system folder ``path`` is, or is inside ('/' for the root itself), else None.
    ``host``: the rules for a folder of the host (a tree such as /etc refused whole, a
    folder such as /tmp or /home only itself)."""
    p = PurePosixPath(path)
    if str(p) == "/":
        return "/"
    for top in HOST_TREES if host else CONTAINER_TREES:
        if is_within(str(p), top):
            return top
    if host and str(p) in HOST_TOPS:
        return str(p)
    return None


def host_folder(value: str) -> str:
    """A folder of another machine (a remote engine's): absolute, not a system one."""
    abs_path(value)
    value = value.rstrip("/")
    if (top := system_folder(value, host=True)) is not None:
        raise ValueError(f"{value!r} is {'the root' if top == '/' else 'a system folder'}"
                         f"{'' if top == value else f' ({top})'}: name a folder of your own"
                         " there, e.g. /home/you/labs")
    return value


def is_within(path: str, folder: str) -> bool:
    p, f = PurePosixPath(path), PurePosixPath(folder)
    return p == f or f in p.parents


def mount_target(value: str) -> str:
    """A container mount point: not the root, a system folder, /home, or the lab user's
    HOME (whose files the entrypoint re-owns) or anything in it."""
    abs_path(value)
    value = value.rstrip("/") or "/"
    if (top := system_folder(value)) is not None:
        raise ValueError(f"{value!r} is {'the root' if top == '/' else 'a system folder'}"
                         f"{'' if top in ('/', value) else f' ({top})'}: mounting there hides"
                         " the image's own files; mount under /workspace or /data instead")
    if value == "/home" or is_within(value, LAB_HOME):
        what = "the folder of the homes" if value == "/home" else "in the lab HOME"
        raise ValueError(f"{value!r} is {what}, whose files are re-owned at start; mount"
                         " under /workspace or /data instead")
    return value


def workdir(value: str) -> str:
    """The lab's working folder: created and owned by the lab user at build time, so never
    a system folder, /home or the lab HOME."""
    abs_path(value)
    value = value.rstrip("/")
    if system_folder(value) is not None or value in ("/home", LAB_HOME):
        raise ValueError(f"{value!r} is a system folder, /home or the lab HOME: the lab user"
                         " would own it; use a folder such as /workspace")
    return value


def env_key(value: str) -> str:
    """A spec's or volume's environment name: a valid name that labctl does not set."""
    env_name(value)
    if value.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"{value!r}: names starting with {RESERVED_ENV_PREFIX} are labctl's"
                         " own (they decide who the lab runs as); choose another name")
    if value in RESERVED_ENV:
        raise ValueError(f"{value!r} is set by labctl for the lab user; remove it")
    return value


def rel_path(value: str) -> str:
    """A path relative to a folder that stays inside it (no '..', '/', '~' or control)."""
    no_control(value)
    if not _REL_PATH.fullmatch(value) or any(p in ("..", ".") for p in value.split("/")):
        raise ValueError(f"{value!r} must be a relative path inside the folder (letters,"
                         " digits, ._@+-; no '..', no leading '/' or '~')")
    return value.rstrip("/")


def proxy(value: str) -> str:
    if not _PROXY.fullmatch(value):
        raise ValueError(f"{value!r} is not a proxy URL like http://127.0.0.1:7890")
    return value


def no_proxy(value: str) -> str:
    if not _NO_PROXY.fullmatch(value):
        raise ValueError(f"{value!r} is not a no_proxy list (host names, addresses and"
                         " domains separated by commas)")
    return value


def bind_address(value: str) -> str:
    """Where ports are published: a literal IP address, or 'localhost' (the loopback
    addresses). A name Docker would have to resolve, or an empty one, publishes on
    every interface."""
    if value == "localhost":
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address: use 127.0.0.1 (this machine only,"
                         " the default), ::1, or 0.0.0.0 to publish on every interface"
                         ) from None


def tag_prefix(value: str) -> str:
    """What image tags start with: [registry[:port]/]path/ in lower case."""
    no_control(value)
    if not _TAG_PREFIX.fullmatch(value) or not image_ref(f"{value}x:latest"):
        raise ValueError(f"{value!r} is not an image name prefix like 'labctl/' or"
                         " 'registry.example.org:5000/class/'")
    return value


_REGISTRY = re.compile(
    r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


def registry(value: str) -> str:
    """Where lab images are pushed and pulled: HOST[:PORT][/PREFIX], no scheme."""
    no_control(value)
    host = value.split("/", 1)[0]
    if not _REGISTRY.fullmatch(value) or not image_ref(f"{value}/x:latest"):
        raise ValueError(f"{value!r} is not a registry like 'registry.example.edu/labs' or"
                         " '127.0.0.1:5000' (no https://, lower-case path)")
    if "." not in host and ":" not in host and host != "localhost":
        # docker would read it as a Docker Hub account and push there
        raise ValueError(f"{host!r} is not a registry host (a name with a dot, a port, or"
                         " localhost); for Docker Hub write docker.io/ACCOUNT")
    return value


def url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an http(s):// or file:// URL (letters, digits and"
            " ._~:/?@%+=,- only)"
        )
    return value


def python_version(value: str) -> str:
    if not _PY.fullmatch(value):
        raise ValueError(f"{value!r} is not a Python version like '3.11'")
    return value


def version(value: str) -> str:
    no_control(value)  # packaging accepts surrounding whitespace, newlines included
    if value != value.strip():
        raise ValueError(f"{value!r} has surrounding spaces")
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version like '2.10.0'") from None
    return value


def torch_variant(value: str) -> str:
    if not _VARIANT.fullmatch(value):
        raise ValueError(f"{value!r} is not a wheel variant: cpu, cu126, cu128, cu130, default or"
                         " auto")
    return value


def name(value: str) -> str:
    if not _NAME.fullmatch(value) or len(value) > 100:
        raise ValueError(f"{value!r} must be lower-case letters, digits, '.', '_' or '-'"
                         " (at most 100)")
    return value


def path_text(value: str) -> str:
    """A host path given as text: one line, no name longer than the file system takes."""
    no_control(value)
    if len(value) > 4096 or any(len(p.encode()) > 255 for p in value.split("/")):
        raise ValueError(f"{value[:60]!r}... is longer than a path can be")
    return value


# docker's --mount value (devcontainer.json's mounts, `docker run --mount`) is CSV: in a
# folder's path these would end the field and add options of the path's choosing.
MOUNT_CSV = (",", "=", '"')


def mount_source(value: str) -> str:
    """A host folder that reaches a --mount string: one line, none of , = \"."""
    path_text(value)
    if any(c in value for c in MOUNT_CSV):
        raise ValueError(f"{value!r} holds one of , = \" which docker's --mount would read as"
                         " another mount option; rename the folder (or name another)")
    return value


def rel_script(value: str) -> str:
    """A .sh or .py file inside the lab's images/ folder (no '..', no absolute path)."""
    if not _REL_FILE.fullmatch(value):
        raise ValueError(
            f"{value!r} must be a .sh or .py file path inside images/, e.g. prepare/fonts.sh"
        )
    return value
