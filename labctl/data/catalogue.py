"""The catalogue of datasets and weights (tables/datasets.yaml, and a lab's own
datasets.yaml of the same form), read through one typed model. Pure: no network."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from labctl import tables
from labctl.config import validators as v
from labctl.config import yamlfile
from labctl.config.report import validation_error
from labctl.config.spec import Line, Name, RelPath, Url

LAB_FILE = "datasets.yaml"


def _hex(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8,64}", value):
        raise ValueError(f"{value!r} is not a hex digest")
    return value


def _pattern(value: str) -> str:
    v.no_control(value)
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"{value!r} is not a regular expression: {e}") from None
    return value


Hex = Annotated[str, AfterValidator(_hex)]
Pattern = Annotated[str, AfterValidator(_pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataFile(_Strict):
    """One file of an entry, as its library downloads and checks it.

    A lab's datasets.yaml and the download servers are not trusted: ``to`` and ``into``
    are relative paths that labctl keeps inside the entry's volume folder (links that
    lead out are refused), ``size`` bounds the download, and archives are unpacked by
    labctl's own member loop (store.unpack). Where the library records no checksum
    (fastai's WT103 weights, Ultralytics' assets and datasets: no authoritative digest is
    published with them, and labctl invents none), labctl never resumes a partial
    download of the file (it starts over) and counts the file as present only when it
    placed it itself: store.place records its size, mtime and sha256 beside the volume
    (.labctl-verified), and a file that no longer matches that record, or that another
    program put there, is "unverified" and fetched again by `labctl data get`."""

    urls: list[Url] = Field(min_length=1)
    to: RelPath  # where the library looks, inside the entry's volume
    size: StrictInt | None = Field(None, ge=0)
    sha1: Hex | None = None
    md5: Hex | None = None
    sha256: Hex | None = None
    sha256_prefix: Hex | None = None  # torch hub: the file name carries it
    md5_first_mib: Hex | None = None  # fastdownload: md5 of the first MiB (with size)
    min_size: StrictInt | None = Field(None, ge=0)  # Ultralytics: it refuses smaller files
    extract: Literal["gunzip", "unzip", "untar"] | None = None
    into: RelPath | None = None  # the folder it is unpacked into (default: the file's)

    @property
    def name(self) -> str:
        return PurePosixPath(self.to).name

    @property
    def unpack_into(self) -> str:
        return self.into if self.into is not None else str(PurePosixPath(self.to).parent)

    @property
    def verifiable(self) -> bool:
        return any((self.sha1, self.md5, self.sha256, self.sha256_prefix, self.md5_first_mib))


class Library(_Strict):
    """Where the library keeps its own record of the entry (checked inside the images)."""

    kind: Literal["d2l", "torchvision-dataset", "torchvision-weights", "fastai",
                  "ultralytics-asset", "ultralytics-dataset", "none"] = "none"
    key: Line = ""


class Entry(_Strict):
    description: Line
    volume: Name  # the lab volume it lands in (volumes.yaml)
    files: list[DataFile] = Field(min_length=1)
    labs: list[Name] = Field(default_factory=list)
    library: Library = Library()
    uses: list[Pattern] = Field(default_factory=list)

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)


class Catalogue(_Strict):
    entries: dict[Name, Entry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_places(self) -> Catalogue:
        seen: dict[tuple[str, str], str] = {}
        for name, entry in self.entries.items():
            for f in entry.files:
                where = (entry.volume, f.to)
                if where in seen and seen[where] != name:
                    raise ValueError(f"{name} and {seen[where]} both put a file at"
                                     f" {entry.volume}/{f.to}")
                seen[where] = name
        return self


def shipped() -> Catalogue:
    return tables.load("datasets.yaml", Catalogue)


def load(lab_root: Path | None) -> Catalogue:
    """The shipped catalogue with the lab's own datasets.yaml over it (by entry name)."""
    base = shipped()
    if lab_root is None:
        return base
    path = lab_root / LAB_FILE
    doc = yamlfile.read(path, optional=True)
    if not doc.data:
        return base
    try:  # model_validate: keys that are not text are the file's error, not a TypeError
        own = Catalogue.model_validate(doc.data)
        return Catalogue(entries={**base.entries, **own.entries})
    except ValidationError as e:
        lines = {".".join(str(p) for p in k): (path, n) for k, n in doc.lines.items()}
        raise validation_error(path, e, Catalogue, "datasets file", lines) from None
