"""The house: the import contracts hold, no module imports another in a circle, and the
command line is whole and reads as a learner's day."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
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

    names = {name for _, rows in SECTIONS for name, _, _ in rows}
    assert {"init", "base", "list", "render", "build", "run", "shell", "ps", "logs", "stop",
            "check", "lock", "freeze", "diff", "doctor", "devcontainer", "compose", "save",
            "load", "data", "add", "errors"} <= names
    ctx = click.Context(cli)
    for name in names:  # each entry of the table names a command that is there
        cmd = cli.get_command(ctx, name)
        assert isinstance(cmd, click.Command) and cmd.name == name, name


def test_help_is_grouped_by_what_a_learner_does_and_not_cut_off() -> None:
    from labctl.cli import SECTIONS, cli

    out = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    sections = [line.rstrip(":") for line in out.splitlines() if line and not line[0].isspace()
                and line.endswith(":")]
    assert sections[-6:] == ["Set up", "Build", "Run", "Reproduce", "Move to another machine",
                             "Diagnose"]
    ctx = click.Context(cli)
    for _, rows in SECTIONS:
        for name, _, summary in rows:
            # the table's summary is the command's own first paragraph: one text, no drift
            cmd = cli.get_command(ctx, name)
            assert " ".join((cmd.help or "").split("\n\n")[0].split()) == summary, name
            line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
            assert summary.rstrip(".") in " ".join(line.split()), (name, line)
            assert "..." not in line, line


def test_help_imports_no_command_module() -> None:
    """`labctl --help` reads the table: no command's module (nor docker) is imported."""
    code = ("import sys; from labctl.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "mods = [m for m in sys.modules if m.startswith('labctl.cli.') and m not in"
            " ('labctl.cli._startup',)] + [m for m in sys.modules if m == 'docker']\n"
            "print(mods, file=sys.stderr); sys.exit(1 if mods else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


# --- function size: where a function grows past these, it has sections to cut ----------
MAX_LINES, MAX_PARAMS = 60, 8

# Named exceptions, each argued:
# - A click command receives every option as a parameter (click calls it so); it hands
#   them on at once as one request object (RunRequest, BuildOptions).
CLICK_COMMANDS = {"labctl/cli/running.py:run", "labctl/cli/images.py:build"}


def _functions() -> list[tuple[str, int, int]]:
    """(file:function, lines, parameters) of every function in labctl/."""
    import ast

    out = []
    for path in sorted((REPO / "labctl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
                n = len(params) + bool(a.vararg) + bool(a.kwarg)
                n -= bool(params and params[0].arg in ("self", "cls"))
                where = f"{path.relative_to(REPO).as_posix()}:{node.name}"
                out.append((where, node.end_lineno - node.lineno + 1, n))
    return out


def test_no_function_is_long_or_takes_many_parameters() -> None:
    functions = _functions()
    assert len(functions) > 500  # the walk found the code
    long = [(w, n) for w, n, _ in functions if n > MAX_LINES]
    many = [(w, k) for w, _, k in functions if k > MAX_PARAMS and w not in CLICK_COMMANDS]
    assert long == [], f"over {MAX_LINES} lines: cut where they break into sections"
    assert many == [], f"over {MAX_PARAMS} parameters: group what travels together"
    # the exceptions still exist and still need to be exceptions
    assert {w for w, _, k in functions if k > MAX_PARAMS} >= CLICK_COMMANDS


MAX_COMMAND_BODY = 25  # options plus presentation: the work is a domain function's


def test_each_command_is_options_plus_presentation() -> None:
    """No click command's body (its docstring aside) over 25 lines, and no import hidden
    in one: the commands load lazily from the table, so their modules import at the top."""
    import ast

    long, hidden = [], []
    for path in sorted((REPO / "labctl" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef) or not any(
                    "command" in ast.unparse(d) or "group" in ast.unparse(d)
                    for d in node.decorator_list):
                continue
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            where = f"{path.name}:{node.name}"
            if body and body[-1].end_lineno - body[0].lineno + 1 > MAX_COMMAND_BODY:
                long.append(where)
            hidden += [where for n in body for s in ast.walk(n)
                       if isinstance(s, ast.Import | ast.ImportFrom)]
    assert long == [], f"command bodies over {MAX_COMMAND_BODY} lines"
    assert sorted(set(hidden)) == [], "imports inside command bodies"
