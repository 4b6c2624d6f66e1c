"""The certificates a build trusts beyond the base image's own store.

Why from the host's trust store and not from the shell: behind a TLS-intercepting proxy
(a campus or corporate network) the proxy's CA is what makes PyPI reachable, and it lives
in the host's store (/usr/local/share/ca-certificates, or appended to the system bundle).
Variables such as PIP_CERT or SSL_CERT_FILE are set in one terminal and dropped by sudo;
reading them alone made the image (and its hash) change with the shell. So: the host's
local anchors (every certificate of the system bundle and the local folders that the
distribution's own set does not ship), plus any bundle the settings or variables name,
compared by content. Root, a sudo user and a plain user get the same image. Only
CERTIFICATE blocks are copied: a bundle that also holds a private key leaves it behind.
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from labctl.errors import LabError

# The combined bundle each distribution family writes (Debian/Ubuntu, Fedora/RHEL, Alpine).
SYSTEM_BUNDLES = ("etc/ssl/certs/ca-certificates.crt", "etc/pki/tls/certs/ca-bundle.crt",
                  "etc/ssl/cert.pem")
# Where an administrator adds anchors of their own.
LOCAL_FOLDERS = ("usr/local/share/ca-certificates", "etc/pki/ca-trust/source/anchors")
# The distribution's own set (Mozilla's roots): every base image has these already.
DISTRO_FOLDERS = ("usr/share/ca-certificates", "usr/share/pki/ca-trust-source")
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")


def certificates(data: bytes) -> list[bytes]:
    """The DER bytes of every CERTIFICATE block in ``data`` (PEM); nothing else of it."""
    out = []
    for m in _PEM.finditer(data):
        try:
            out.append(base64.b64decode(b"".join(m[1].split()), validate=True))
        except ValueError:
            continue
    return out


def _files(folders: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*")
                            if p.suffix in (".crt", ".pem") and p.is_file())
    return found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # an unreadable file of the system store is not the learner's to fix
        return b""


def _certs_of(paths: Iterable[Path]) -> set[bytes]:
    return {c for p in paths for c in certificates(_read(p))}


@cache
def _distro(root: Path) -> frozenset[bytes]:
    return frozenset(_certs_of(_files(root / d for d in DISTRO_FOLDERS)))


@cache
def _host_anchors(root: Path) -> frozenset[bytes]:
    found = _certs_of(root / b for b in SYSTEM_BUNDLES)
    found |= _certs_of(_files(root / d for d in LOCAL_FOLDERS))
    return frozenset(found - _distro(root))


def extra_certificates(bundles: Iterable[Path], root: Path = Path("/")) -> bytes:
    """The PEM text (sorted, one canonical form) of the host's local anchors and every
    certificate of ``bundles`` that the distribution's own set lacks; b"" when none."""
    ders = set(_host_anchors(root))
    for bundle in bundles:
        try:
            data = bundle.read_bytes()
        except OSError as e:
            raise LabError(
                f"cannot read the CA bundle {bundle}: {e.strerror}",
                id="lab.ca-bundle-unreadable",
                fix="fix network.ca_bundle in labctl.yaml, or unset PIP_CERT/REQUESTS_CA_BUNDLE/"
                "SSL_CERT_FILE",
            ) from None
        certs = certificates(data)
        if not certs:
            raise LabError(f"{bundle} holds no PEM certificate", id="lab.ca-bundle-no-certs",
                           fix="point network.ca_bundle at a PEM file"
                           " (-----BEGIN CERTIFICATE-----)")
        ders |= set(certs) - _distro(root)
    return b"".join(ssl.DER_cert_to_PEM_cert(d).encode() for d in sorted(ders))
