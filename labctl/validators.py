"""Validators for every spec value that can reach a Dockerfile or a requirements file.

Each returns the value unchanged or raises ValueError with a message that says what
is allowed; pydantic turns that into a one-line error naming the file and key.
"""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Debian policy: lower case letters, digits, + - . ; at least two chars, starts alnum.
_APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")
# A docker image reference: [registry[:port]/]path[:tag][@digest], lower-case path.
_IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ABS_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
# No shell metacharacters ($ ; & ( ) ! * # quotes, spaces): a URL may reach a RUN line.
_URL = re.compile(r"^(https?|file)://[A-Za-z0-9._~:/?@%+=,-]+$")
_PY = re.compile(r"^3\.[0-9]{1,2}$")
_VARIANT = re.compile(r"^(default|cpu|cu[0-9]{3}|rocm[0-9.]+)$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
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
    if not _IMAGE_REF.fullmatch(value):
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


def mount_target(value: str) -> str:
    """A mount point: not under the lab user's HOME, whose files the entrypoint re-owns."""
    abs_path(value)
    if value.rstrip("/") == "/home/lab" or value.startswith("/home/lab/"):
        raise ValueError(f"{value!r} is under /home/lab, whose files are re-owned at start;"
                         " mount under /workspace or /data instead")
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
        raise ValueError(f"{value!r} is not a wheel variant: cpu, cu126, cu128, cu130 or default")
    return value


def name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} must be lower-case letters, digits, '.', '_' or '-'")
    return value


def rel_script(value: str) -> str:
    """A .sh or .py file inside the lab's images/ folder (no '..', no absolute path)."""
    if not _REL_FILE.fullmatch(value):
        raise ValueError(
            f"{value!r} must be a .sh or .py file path inside images/, e.g. prepare/fonts.sh"
        )
    return value
