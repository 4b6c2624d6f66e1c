"""Writing a file in a folder labctl does not own (a cloned lab, the learner's project): a
new file under a random name, renamed over the old one. A link or file planted at the
path, or at a temporary name, is replaced, never written through; a secret is 0600 from
its first byte."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_atomic(path: Path, data: str | bytes, *, private: bool = False) -> None:
    """``data`` (str: UTF-8, line endings as given) as the new content of ``path``.
    ``private``: mode 0600 (a token, a Secret); else the usual 0666 less the umask."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    # mkstemp: os.open(O_CREAT | O_EXCL, 0o600) under a name no one could have planted
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".labctl-tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if not private:
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
