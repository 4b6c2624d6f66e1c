"""The one error table (tables/errors.yaml) and the one error handler of the CLI."""

from __future__ import annotations

import errno
import socket

import docker.errors
import pytest
import requests

from labctl.cli.common import handle
from labctl.errors import LabError, advise, os_error


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
