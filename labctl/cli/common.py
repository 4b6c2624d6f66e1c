"""What every command shares: the one error handler, the --lab and --json options, the lab
and engine they load, and the notice about labs a killed labctl left running."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from labctl.errors import LabError, os_error

if TYPE_CHECKING:
    from labctl.config.lab import Lab
    from labctl.engine import Engine


def handle(exc: BaseException) -> LabError | None:
    """The one-screen error for an exception a learner can act on; None for a bug (whose
    traceback must be seen). Engine errors first: requests' exceptions are OSErrors too,
    and a dropped engine connection is not a file the learner must chown."""
    if isinstance(exc, LabError):
        return exc
    from labctl.engine import explain, is_engine_error

    if is_engine_error(exc):
        return explain(exc)  # type: ignore[arg-type]
    if isinstance(exc, OSError):
        return os_error(exc)
    return None


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print learner-fixable errors as one screen (no traceback) and exit with their code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from labctl.cli import ui

        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            ui.err_console.print("interrupted")
            sys.exit(130)
        except Exception as e:
            err = handle(e)
            if err is None:
                raise
            ctx = click.get_current_context(silent=True)
            if ctx is not None and ctx.params.get("as_json"):  # scripts read stdout
                ui.dump_json({"error": err.as_dict(), **err.extra})
            ui.error(err)
            sys.exit(err.exit_code)

    return wrapper


lab_option = click.option(
    "--lab", "lab_dir", envvar="LABCTL_LAB", type=click.Path(file_okay=False),
    help="Lab folder (default: found from the working directory upward).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def load(lab_dir: str | None) -> Lab:
    from labctl.config.lab import load_lab

    lab = load_lab(lab_dir)
    lab.engine_gpu = engine_has_gpu  # asked only by a spec with torch.variant: auto
    return lab


@functools.cache
def engine_has_gpu() -> bool:
    """Whether the engine can give a container an NVIDIA GPU (runtime or CDI)."""
    from labctl.engine import Engine
    from labctl.gpu.access import gpu_mode

    return gpu_mode(Engine.connect(timeout=30)) != "none"


def maybe_lab(lab_dir: str | None) -> Lab | None:
    """The lab, when there is one: some commands also work outside a lab folder."""
    try:
        return load(lab_dir)
    except LabError:
        if lab_dir:
            raise
        return None


def engine(lab: Lab | None = None, timeout: int = 600) -> Engine:
    """The engine; in a lab, first a word about labs a killed labctl left running."""
    from labctl.engine import Engine

    e = Engine.connect(timeout=timeout)
    if lab is not None:
        warn_orphans(e, lab)
    return e


def built(engine: Engine, lab: Lab, names: tuple[str, ...]) -> tuple[str, ...]:
    """``names``, or when none were given the specs of this lab whose image is built."""
    return names or tuple(n for n in lab.spec_names() if engine.image(lab.image_tag(n)))


def warn_orphans(engine: Engine, lab: Lab) -> None:
    from labctl.cli import ui
    from labctl.runtime.containers import orphans

    for c in orphans(engine, lab):
        ui.err_console.print(
            f"warning: {c.name} is still running, but the labctl that started it in the"
            f" foreground is gone (killed?); stop it with `labctl stop {c.name}`")
