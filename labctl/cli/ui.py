"""Terminal output: tables, one-screen errors, build progress (rich)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from labctl.errors import LabError

if TYPE_CHECKING:  # a runtime import would load jinja2 for every command
    from labctl.image.build import BuildEvent

# Pipes and logs get long lines rather than rich's default 80 columns. No markup: what is
# printed holds paths, spec and package names of the learner's (a folder 'ld[/]y', a
# requirement 'x[bold]==1'), which rich would read as tags, or fail on; styles come
# from Text objects.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(highlight=False, soft_wrap=True, width=_WIDTH, markup=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False,
                      width=None if sys.stderr.isatty() else 160)


def error(exc: LabError) -> None:
    head = Text("error: ", style="bold red")
    head.append(f"{exc.file}: " if exc.file else "", style="bold")
    head.append(exc.message)
    err_console.print(head)
    for d in exc.details:
        err_console.print(Text(f"  {d}"))
    if exc.fix:
        err_console.print(Text("fix: ", style="bold green") + Text(exc.fix))
    err_console.print(Text(f"[{exc.id}] `labctl errors {exc.id}` says more", style="dim"))


@contextmanager
def status(text: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr saying ``text``; yields the function that changes what it says.
    The text is shown as it is (rich's status would read engine output as markup)."""
    with err_console.status(Text(text)) as shown:
        yield lambda line: shown.update(Text(line))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[Text(str(x)) if not isinstance(x, Text) else x for x in r])
    console.print(t)


def dump_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


class BuildProgress:
    """Shows a build: a live 'step n/m' line plus recent output (auto), every line (plain),
    or one JSON object per event (json)."""

    def __init__(self, name: str, mode: str = "auto", out: Console | None = None) -> None:
        self.out = out or console  # stderr when stdout carries --json
        if mode == "auto":
            mode = "live" if self.out.is_terminal else "plain"
        self.mode = mode
        self.name = name
        self.lines: list[str] = []
        self.header = f"{name}: preparing"
        self.live: Live | None = None

    def __enter__(self) -> BuildProgress:
        if self.mode == "live":
            self.live = Live(self._render(), console=self.out, refresh_per_second=8,
                             transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.__exit__(None, None, None)

    def _render(self) -> Text:
        t = Text(self.header + "\n", style="bold cyan")
        for line in self.lines[-6:]:
            t.append(f"  {line[:self.out.width - 4]}\n", style="dim")
        return t

    def __call__(self, ev: BuildEvent) -> None:
        if self.mode == "json":
            sys.stdout.write(json.dumps({"spec": self.name, **ev.__dict__}) + "\n")
            sys.stdout.flush()
            return
        if ev.kind == "step":
            where = f" [{ev.key}]" if ev.key else ""
            # BuildKit's cache and secret mounts say nothing to a learner: the command does
            text = re.sub(r"--mount=\S+\s+", "", ev.text)
            self.header = f"{self.name}: step {ev.step}/{ev.total}{where} {text[:100]}"
            self.lines = []
            if self.mode == "plain":
                self.out.print(Text(self.header, style="bold"), soft_wrap=True)
        elif ev.kind == "cached":
            self.header += "  (cached)"
            if self.mode == "plain":
                self.out.print(Text("  cached", style="dim"))
        else:
            self.lines.append(ev.text)
            if self.mode == "plain":
                self.out.print(Text(f"  {ev.text}"), soft_wrap=True)
        if self.live:
            self.live.update(self._render())


def human_size(n: int | float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class DownloadProgress:
    """One progress bar per file on stderr: bytes, size, rate and time left."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=err_console, transient=not err_console.is_terminal)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> DownloadProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def update(self, name: str, done: int, total: int | None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)
