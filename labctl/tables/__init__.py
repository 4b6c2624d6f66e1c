"""labctl's data tables: YAML files beside this module, each with its sources in its
header, each read once through the pydantic model of the module that owns it."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
FOLDER = Path(__file__).resolve().parent


# libyaml's loader where PyYAML has it: the dataset catalogue is read on every render,
# and the pure-Python loader takes a quarter of a second over it.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def _raw(name: str) -> object:
    return yaml.load((FOLDER / name).read_text(encoding="utf-8"), Loader=_LOADER)


@cache
def load(name: str, model: type[M]) -> M:
    """tables/NAME validated by ``model``, once per process. A broken table is a bug in
    labctl, so pydantic's own error is the right one to show."""
    return model.model_validate(_raw(name))
