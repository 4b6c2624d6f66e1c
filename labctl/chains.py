"""Layer chain ids: how an engine names the layers it holds. Pure arithmetic, so the
disk report, bundles and the engine adapter share it without importing docker."""

from __future__ import annotations

import hashlib


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The chain id of each layer of a stack: the digest of the whole stack below it, the
    way the engine names a layer it has (a layer's content alone is not enough)."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(
            f"{out[-1]} {d}".encode()).hexdigest())
    return out


def leading_present(diff_ids: list[str], have: set[str]) -> int:
    """How many leading layers of this stack are among the chain ids ``have``."""
    return next((i for i, c in enumerate(chain_ids(diff_ids)) if c not in have), len(diff_ids))
