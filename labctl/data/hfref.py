"""A Hugging Face repository reference, `hf:ORG/NAME[@REVISION]`, and the names of the
hub cache's folders and blobs: pure, so that a bundle's head (untrusted) is checked with the
same rules as the command line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from labctl.errors import LabError

PREFIX = "hf:"
# Hub names: ORG/NAME (or a legacy NAME); letters, digits and - _ . inside, 96 at most.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REF = re.compile(rf"(?:(?P<kind>datasets|models)/)?(?P<repo>(?:{_NAME}/)?{_NAME})"
                  r"(?:@(?P<rev>[A-Za-z0-9][A-Za-z0-9._/-]{0,199}))?")
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")
# A blob of the hub cache: named by its git sha1 (small files) or sha256 (LFS files).
BLOB = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class HfRef:
    repo_id: str
    repo_type: str = "model"  # model | dataset
    revision: str = "main"

    @property
    def name(self) -> str:
        kind = "datasets/" if self.repo_type == "dataset" else ""
        rev = f"@{self.revision}" if self.revision != "main" else ""
        return f"{PREFIX}{kind}{self.repo_id}{rev}"

    @property
    def folder(self) -> str:
        """huggingface_hub's folder of the repository in the hub cache."""
        return f"{self.repo_type}s--" + self.repo_id.replace("/", "--")


def is_ref(text: str) -> bool:
    return text.startswith(PREFIX)


def parse_ref(text: str) -> HfRef:
    """'hf:ORG/NAME[@REVISION]' or 'hf:datasets/ORG/NAME[@REVISION]'."""
    body = text.removeprefix(PREFIX)
    m = _REF.fullmatch(body)
    bad = m is None or ".." in body or "--" in (m["repo"] or "") or (
        m["rev"] is not None and (m["rev"].endswith("/") or "//" in m["rev"]))
    if bad or m is None:
        raise LabError(f"{text!r} is not a Hugging Face repository", id="hf.bad-repo-name",
                       fix="write hf:ORG/NAME, hf:ORG/NAME@REVISION (a branch, tag or commit)"
                       " or hf:datasets/ORG/NAME, e.g. hf:Qwen/Qwen2.5-0.5B-Instruct")
    return HfRef(m["repo"], "dataset" if m["kind"] == "datasets" else "model",
                 m["rev"] or "main")
