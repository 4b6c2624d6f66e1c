"""Whether a host port is free: used by `labctl run` to pick one and by doctor to check."""

from __future__ import annotations

import errno
import socket


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now (what Docker's proxy will need)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True
