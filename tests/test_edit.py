"""`labctl add` edits a spec as a person would: the extras grow, nothing else changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.config import yamlfile
from labctl.config.edit import add_extras
from labctl.config.spec import load_spec


@pytest.mark.parametrize(("text", "inherited"), [
    ("# my lab\npip: [six]\nextras:\n  - idna==3.7   # pinned by hand\n\n# the end\n", []),
    ("pip: [six]\nextras: [idna==3.7]  # flow\njupyter: true\n", []),
    ("pip: [six]\nextras: []\n", []),
    ("pip: [six]", []),
    ("extends: base\n# only a child\n", ["idna==3.7"]),
])
def test_extras_grow_and_the_rest_stays(tmp_path: Path, text: str, inherited: list[str]) -> None:
    (tmp_path / "base.yaml").write_text("pip: [six]\nextras: ['idna==3.7']\n")
    path = tmp_path / "x.yaml"
    path.write_text(text)
    before = load_spec("x", tmp_path).extras
    new = add_extras(yamlfile.read(path), text, ["seaborn==0.13.2", "rich>=13,<14"], inherited)
    path.write_text(new)
    assert load_spec("x", tmp_path).extras == [*before, "seaborn==0.13.2", "rich>=13,<14"]
    kept = [line for line in text.splitlines() if line.strip() and "extras" not in line]
    assert all(line in new for line in kept)  # comments and other keys as they were
