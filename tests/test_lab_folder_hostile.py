"""A lab folder from someone else (a clone, a bundle) is untrusted: its volumes.yaml must
not point a lab at a home's hidden folders, at another account's folder or at labctl's
own .labctl/, and the folder that holds Jupyter tokens stays private whatever it came as."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import REPO, raises_id

from labctl.config.lab import load_lab
from labctl.errors import LabError
from labctl.runtime.run import _token_file, forget_token_file

SHIPPED = (REPO / "volumes.yaml").read_text()


def _lab(root: Path, host: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "volumes.yaml").write_text(
        f"volumes:\n  evil:\n    host: '{host}'\n    container: /data/evil\n")
    return root


@pytest.mark.parametrize("host", ["~/.ssh", "~/.config/autostart", "~", ".labctl",
                                  ".labctl/tokens", ".git/hooks", ".", "sub/.hidden"])
def test_a_volume_in_a_hidden_folder_a_home_or_the_lab_itself_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """`labctl data get` into such a volume planted ~/.ssh/authorized_keys; now the lab
    folder does not load, and the error names the file and the key."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    root = _lab(tmp_path / "lab", host)
    with pytest.raises(LabError) as e:
        load_lab(str(root), environ={})
    assert e.value.message.startswith("volumes.evil.host:")
    assert e.value.file == str(root / "volumes.yaml")


def test_the_root_accounts_ssh_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="volumes.evil.host"):
        load_lab(str(_lab(tmp_path / "lab", "/root/.ssh")), environ={})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write everywhere")
def test_a_volume_the_user_may_not_write_is_refused(tmp_path: Path) -> None:
    """Without --user a lab runs as the image's uid: a folder the learner cannot write
    (another account's, read-only) is refused as --src refuses it."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o500)
    try:
        with pytest.raises(LabError, match="you may not write"):
            load_lab(str(_lab(tmp_path / "lab", str(theirs))), environ={})
    finally:
        theirs.chmod(0o700)


def test_the_shipped_volumes_still_load(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    root.mkdir()
    (root / "volumes.yaml").write_text(SHIPPED)
    assert "data" in load_lab(str(root), environ={}).volumes


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_seeded_labctl_folder_is_tightened_and_tokens_are_private(tmp_path: Path) -> None:
    """A bundle or clone that brought .labctl/ and tokens/ as 0755: the next token is
    in folders only its owner can enter, and is 0600 itself."""
    root = _lab(tmp_path / "lab", "data")
    (root / ".labctl" / "tokens").mkdir(parents=True)
    (root / ".labctl").chmod(0o755)
    (root / ".labctl" / "tokens").chmod(0o777)
    lab = load_lab(str(root), environ={})
    token = _token_file(lab, "secret")
    assert _mode(root / ".labctl") == 0o700
    assert _mode(root / ".labctl" / "tokens") == 0o700
    assert _mode(token) == 0o600


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write everywhere")
def test_only_a_root_made_folder_inside_the_lab_is_left_to_doctor(tmp_path: Path) -> None:
    """Inside the lab folder, a folder the learner may not write is still refused unless a
    container made it as root (test_doctor_gpu.py::test_root_owned_volume_folder)."""
    root = _lab(tmp_path / "lab", "data")
    (root / "data").mkdir()
    (root / "data").chmod(0o500)
    try:
        with raises_id("lab.volume-not-allowed"):
            load_lab(str(root), environ={})
    finally:
        (root / "data").chmod(0o700)


def test_a_labctl_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    """Tokens written through a link would land wherever its maker chose."""
    root = _lab(tmp_path / "lab", "data")
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir(mode=0o777)
    (root / ".labctl").symlink_to(elsewhere)
    lab = load_lab(str(root), environ={})
    with pytest.raises(LabError, match="is a link"):
        lab.state_dir("tokens")
    assert list(elsewhere.iterdir()) == []


def test_stop_removes_only_a_token_file_of_the_labs_own(tmp_path: Path) -> None:
    """`labctl stop` removed whatever host file a container mounted at the token path."""
    root = _lab(tmp_path / "lab", "data")
    lab = load_lab(str(root), environ={})
    precious = tmp_path / "thesis.tex"
    precious.write_text("years of work")
    forget_token_file(root, precious)
    assert precious.exists()
    token = _token_file(lab, "t")
    forget_token_file(root, token)
    assert not token.exists()


def test_compose_token_file_planted_in_a_cloned_folder(tmp_path: Path) -> None:
    """`labctl compose` writes the token into .labctl/compose.env: a link planted there is
    refused (its target untouched), a loose file that came with the folder is tightened."""
    from labctl.runtime.run import env_token_file

    target = tmp_path / "elsewhere.txt"
    target.write_text("theirs\n")
    env = tmp_path / "compose.env"
    env.symlink_to(target)
    with raises_id("run.bad-token-file"):
        env_token_file(env)
    assert target.read_text() == "theirs\n"
    env.unlink()
    env.write_text("JUPYTER_TOKEN=old\n")
    env.chmod(0o644)
    assert env_token_file(env) == env and _mode(env) == 0o600
    env.unlink()
    env_token_file(env)
    assert _mode(env) == 0o600 and env.read_text().startswith("JUPYTER_TOKEN=")
