"""The house: the import contracts hold, no module imports another in a circle, and the
command line is whole and reads as a learner's day."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports is missing: pip install -e '.[test]'"
    proc = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v) & modules:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return out


def test_no_module_imports_another_in_a_circle() -> None:
    graph = grimp.build_graph("labctl", exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if m.startswith("labctl")}
    assert _cycles(graph, modules) == []


def test_the_cli_object_has_every_command() -> None:
    from labctl.cli import SECTIONS, cli

    names = {c.name for _, cmds in SECTIONS for c in cmds}
    assert {"init", "base", "list", "render", "build", "run", "shell", "ps", "logs", "stop",
            "check", "lock", "freeze", "diff", "doctor", "devcontainer", "compose", "save",
            "load", "data", "add"} <= names
    assert set(cli.commands) == names


def test_help_is_grouped_by_what_a_learner_does_and_not_cut_off() -> None:
    from labctl.cli import cli

    out = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    sections = [line.rstrip(":") for line in out.splitlines() if line and not line[0].isspace()
                and line.endswith(":")]
    assert sections[-6:] == ["Set up", "Build", "Run", "Reproduce", "Move to another machine",
                             "Diagnose"]
    for name, cmd in cli.commands.items():
        summary = " ".join((cmd.help or "").split("\n\n")[0].split())
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert summary.rstrip(".") in " ".join(line.split()), (name, line)
        assert "..." not in line, line
