"""What the checks share: the engine, the GPU probe, the lab and its specs, each found
once, lazily, with the error kept instead of raised.

Why lazy: `labctl doctor` must answer in under two seconds; a check that is not needed
(no lab, no --image) must cost nothing, and one failure (no engine) must only turn the
checks that need it into skips.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LabError

if TYPE_CHECKING:
    from labctl.config.lab import Lab
    from labctl.config.spec import ImageSpec
    from labctl.engine import Engine
    from labctl.gpu.probe import Probe

ENGINE_TIMEOUT = 5  # seconds; a doctor must not hang on a dead engine
IMAGE_ENGINE_TIMEOUT = 120  # --image starts containers, slow on a busy machine


class Context:
    def __init__(self, names: tuple[str, ...] = (), *, image: bool = False,
                 lab_dir: str | None = None) -> None:
        self.names = names
        self.image = image
        self.lab_dir = lab_dir
        self.engine_error: LabError | None = None
        self.lab_error: LabError | None = None

    # --- engine ------------------------------------------------------------------------
    @cached_property
    def endpoint(self) -> tuple[str, str]:
        from labctl.engine import endpoint

        return endpoint()

    @cached_property
    def engine(self) -> Engine | None:
        from labctl.engine import Engine

        try:
            return Engine.connect(timeout=IMAGE_ENGINE_TIMEOUT if self.image else ENGINE_TIMEOUT)
        except LabError as e:
            self.engine_error = e
            return None

    @property
    def is_local(self) -> bool:
        """The engine runs on this machine (a unix socket), so its paths are ours."""
        return self.endpoint[0].startswith("unix://")

    @cached_property
    def gpu_mode(self) -> str:
        """How a container gets the GPU here: runtime, cdi or none."""
        from labctl.gpu.access import gpu_mode

        return gpu_mode(self.engine) if self.engine else "none"

    # --- GPUs --------------------------------------------------------------------------
    @cached_property
    def probe(self) -> Probe:
        from labctl.gpu.probe import probe

        return probe()

    # --- lab ---------------------------------------------------------------------------
    @cached_property
    def lab(self) -> Lab | None:
        from labctl.config.lab import load_lab

        try:
            lab = load_lab(self.lab_dir)
        except LabError as e:
            self.lab_error = e
            return None
        lab.engine_gpu = lambda: self.gpu_mode != "none"  # torch.variant: auto
        return lab

    @property
    def lab_explicit(self) -> bool:
        return bool(self.lab_dir or os.environ.get("LABCTL_LAB"))

    def spec_names(self) -> list[str]:
        """NAMES from the command line, else every spec of the lab."""
        if self.lab is None:
            return []
        return list(self.names) or self.lab.spec_names()

    def spec(self, name: str) -> ImageSpec:
        """The validated spec (LabError when it is invalid or unknown)."""
        if name not in self._specs:
            try:
                self._specs[name] = (self.lab.spec(name) if self.lab
                                     else LabError("no lab", id="doctor.no-lab"))
            except LabError as e:
                self._specs[name] = e
        found = self._specs[name]
        if isinstance(found, LabError):
            raise found
        return found

    @cached_property
    def _specs(self) -> dict[str, ImageSpec | LabError]:
        return {}

    def rel(self, path: Path) -> str:
        """A path relative to the lab when inside it (shorter messages)."""
        return self.lab.rel(path) if self.lab is not None else str(path)
