"""`labctl push`: lab images to a registry, for other machines (whose `labctl build` then
pulls an image of the same spec instead of building it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from labctl.config import validators
from labctl.config.lab import Lab
from labctl.engine import Engine
from labctl.errors import LabError
from labctl.image.build import state
from labctl.image.render import render

# What shows one image's upload: entered around it, it yields the function the engine
# reports (layer, bytes done, bytes in all) to.
Uploading = Callable[[], AbstractContextManager[Callable[[str, int, int | None], None]]]


@dataclass(frozen=True)
class Pushed:
    """One image in the registry."""

    name: str  # the spec
    ref: str  # REGISTRY/NAME:latest
    digest: str  # the registry's manifest digest

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "ref": self.ref, "digest": self.digest}


def check_registry(lab: Lab, registry: str | None) -> None:
    """A registry to push to: ``registry`` (a valid one), else the lab's `registry:`. Said
    before the engine is asked anything."""
    if registry:
        try:
            validators.registry(registry)
        except ValueError as e:
            raise LabError(f"--registry: {e}",
                           id="cli.bad-registry",
                           fix="e.g. --registry registry.example.edu/labs") from None
    elif not lab.settings.registry:
        raise LabError("no registry to push to",
                       id="cli.no-registry", fix="pass --registry HOST[:PORT][/PREFIX], or"
                       " set registry: in labctl.yaml")


def push(engine: Engine, lab: Lab, names: Sequence[str], registry: str | None,
         uploading: Uploading) -> list[Pushed]:
    """Tag and push the images of specs ``names`` to ``registry`` (None: the lab's), each
    refused unless it is current: the registry would give other machines an old lab
    under the spec's hash."""
    pushed = []
    for name in names:
        tag = lab.image_tag(name)
        if state(engine, tag, render(lab, lab.spec(name)).digest) != "current":
            raise LabError(f"{tag} is not current: the registry would get an old {name}",
                           id="cli.image-not-current", fix=f"labctl build {name}, then push again")
        ref = lab.registry_ref(name, registry)
        assert ref is not None  # check_registry: there is a registry
        engine.tag(engine.image(tag).id, ref)
        with uploading() as update:
            digest = engine.push(ref, update)
        pushed.append(Pushed(name, ref, digest))
    return pushed
