"""The one error table (tables/errors.yaml) and the one error handler of the CLI."""

from __future__ import annotations

import ast
import errno
import socket
from pathlib import Path

import docker.errors
import pytest
import requests

from labctl.cli.common import handle
from labctl.errors import LabError, advise, os_error

REPO = Path(__file__).resolve().parent.parent


def test_a_dropped_engine_connection_is_an_engine_error_not_a_file_to_chown() -> None:
    # requests' exceptions are OSErrors: caught as a file problem, a dropped connection
    # during `labctl logs -f` used to print "cannot use a file ... sudo chown".
    exc = requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected())")
    err = handle(exc)
    assert err is not None and "chown" not in str(err)
    assert err.message.startswith("no Docker engine answers at ")
    assert "sudo systemctl start docker" in (err.fix or "")


@pytest.mark.parametrize(("exc", "words", "fix"), [
    (OSError(errno.ENOSPC, "No space left on device", "/lab/data/x"),
     "disk that holds /lab/data/x is full", "df -h /lab/data/x"),
    (socket.gaierror(-2, "Name or service not known"), "host name could not be resolved",
     "mirror"),
    (PermissionError(errno.EACCES, "Permission denied", "/lab/cache"), "may not use /lab/cache",
     "sudo chown"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/lab/x.yaml"),
     "/lab/x.yaml does not exist", "check the path"),
])
def test_each_oserror_gets_the_advice_that_fits_it(exc: OSError, words: str, fix: str) -> None:
    err = handle(exc)
    assert err is not None and words in err.message and fix in (err.fix or "")
    if "chown" in fix:
        return
    assert "chown" not in (err.fix or "")


def test_a_bug_is_not_hidden() -> None:
    assert handle(ZeroDivisionError("x")) is None


def test_engine_answers_are_shown_or_explained() -> None:
    from labctl.engine import explain

    full = explain(docker.errors.APIError("500", explanation="no space left on device"))
    assert "disk is full" in full.message
    other = explain(docker.errors.APIError("409", explanation="something the engine said"))
    assert other.message == "the Docker engine said: something the engine said"


@pytest.mark.parametrize(("text", "where", "row"), [
    ("SSL: CERTIFICATE_VERIFY_FAILED certificate verify failed", "build", "tls-untrusted"),
    ("invalid peer certificate: UnknownIssuer", "resolve", "tls-untrusted"),
    ("  × Failed to download `idna==3.7`\n  ╰─▶ Hash mismatch for `idna==3.7`", "build",
     "hash-mismatch"),
    ("No solution found when resolving dependencies", "resolve", "no-solution"),
    ("labctl: incompatible packages:", "build", "incompatible"),
    ("dial unix /var/run/docker.sock: connect: permission denied", "engine",
     "engine-permission"),
])
def test_the_table_classifies(text: str, where: str, row: str) -> None:
    found = advise(text, where)  # type: ignore[arg-type]
    assert found is not None and found.id == row


def test_a_tls_failure_in_a_build_is_about_certificates_not_the_spec() -> None:
    found = advise("urllib.error.URLError: <urlopen error [SSL: CERTIFICATE_VERIFY_FAILED]>",
                   "build", spec="d2l")
    assert found is not None
    assert "ca-certificates" in found.fix and "spec is not the problem" in found.fix


def test_an_unknown_oserror_still_names_the_path() -> None:
    err = os_error(OSError(errno.EBUSY, "Device or resource busy", "/lab/x"))
    assert isinstance(err, LabError) and "/lab/x" in err.message


def test_the_cli_handler_prints_the_engine_error(capsys: pytest.CaptureFixture[str]) -> None:
    from labctl.cli.common import friendly

    @friendly
    def follow_logs() -> None:
        raise requests.exceptions.ConnectionError("Connection aborted.")

    with pytest.raises(SystemExit) as info:
        follow_logs()
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert "chown" not in err and "Docker engine" in err


# --- every error has a stable id, listed in one table --------------------------------------
def _raises() -> list[tuple[str, ast.Call]]:
    """Every construction of a LabError (or a subclass's call to its __init__) in labctl/."""
    out = []
    for path in sorted((REPO / "labctl").rglob("*.py")):
        if "incontainer" in path.parts:  # runs inside containers: not labctl's LabError
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(
                f, ast.Attribute) else ""
            is_super_init = (isinstance(f, ast.Attribute) and f.attr == "__init__"
                             and isinstance(f.value, ast.Call)
                             and getattr(f.value.func, "id", "") == "super")
            own = path.name == "errors.py" and is_super_init  # LabError's own Exception
            if (name == "LabError" or is_super_init) and not own:
                out.append((f"{path.relative_to(REPO)}:{node.lineno}", node))
    return out


def test_every_raise_names_an_id_of_the_table_and_every_id_is_raised() -> None:
    from labctl.errors import error_table, tables

    raises = _raises()
    assert len(raises) > 150  # the walk found them
    literal: dict[str, list[str]] = {}
    computed = []
    for where, call in raises:
        kw = next((k.value for k in call.keywords if k.arg == "id"), None)
        assert kw is not None, f"{where}: a LabError without id="
        # the literals in it: all of it, or the fallback of a row of the words table
        for c in ast.walk(kw):
            if isinstance(c, ast.Constant) and isinstance(c.value, str):
                literal.setdefault(c.value, []).append(where)
        if not (isinstance(kw, ast.Constant) and isinstance(kw.value, str)):
            computed.append(where)
    table = error_table()
    unknown = {i: w for i, w in literal.items() if i not in table}
    assert unknown == {}, "ids raised but not in tables/error_ids.yaml"
    own = {r.id for r in tables.load("error_ids.yaml", _ids_model()).errors}
    assert own - set(literal) == set(), "ids in tables/error_ids.yaml that nothing raises"
    # An id that is not a literal comes from the words table (errors.yaml), or passes on
    # the id of the error it explains: few places, each a classifier.
    assert len(computed) <= 12, computed


def _ids_model():  # noqa: ANN202
    from labctl.errors import _Ids

    return _Ids


def test_an_error_prints_its_id_and_json_gets_it_on_stdout(tmp_path) -> None:  # noqa: ANN001
    """A learner sees the id (to search for it); a script reads it from stdout."""
    import json
    import subprocess
    import sys

    (tmp_path / "lab").mkdir()
    proc = subprocess.run([sys.executable, "-m", "labctl", "list", "--json", "--lab",
                           str(tmp_path / "lab")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    err = doc["error"]
    assert err["id"] == "lab.not-a-lab-folder" and "labctl init" in (err["fix"] or "")
    assert f"[{err['id']}]" in proc.stderr
    plain = subprocess.run([sys.executable, "-m", "labctl", "list", "--lab",
                            str(tmp_path / "lab")], capture_output=True, text=True, timeout=60)
    assert plain.stdout == "" and f"[{err['id']}]" in plain.stderr
    explained = subprocess.run([sys.executable, "-m", "labctl", "errors", err["id"]],
                               capture_output=True, text=True, timeout=60)
    assert explained.returncode == 0 and err["id"] in explained.stdout
