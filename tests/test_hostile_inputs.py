"""A lab folder cloned from someone else is untrusted: its file names, volumes.yaml, specs and
the learner's own devcontainer.json reach docker's --mount strings, JSON and YAML readers,
the terminal and files labctl writes. Whatever they hold, labctl answers with a LabError
(a file and a fix) or does exactly what was meant, never a traceback or an injection."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import labctl, write_lab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.config import yamlfile
from labctl.config.edit import add_extras
from labctl.config.lab import load_lab
from labctl.config.spec import load_spec
from labctl.errors import LabError
from labctl.export import compose as cp
from labctl.export import devcontainer as dc
from labctl.runtime.plan import HostFacts, RunRequest, plan_run

EXAMPLES = int(os.environ.get("LABCTL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get(
    "LABCTL_FUZZ_RANDOM"), suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.function_scoped_fixture])
SPECS = {"nb": "pip: [six]\njupyter: {enabled: true, port: 8888}\nvolumes: [data]\n"}
INJECTED = "x,source=/etc,readonly"


def _plan(lab_root: Path, srcs: list[str]):
    lab = load_lab(str(lab_root), environ={})
    return plan_run(lab, lab.spec("nb"),
                    RunRequest(user=True, srcs=tuple(srcs), bind="127.0.0.1", token="tok"),
                    HostFacts(uid=1234, gid=2345, home=Path("/nonexistent-home"),
                              rootless=False, gpu_access="none", has_ipv6_loopback=True,
                              port_free=lambda ip, p: True, name_taken=lambda n: False))


# --- 1. docker's --mount is CSV: no path may add options to it --------------------------

@pytest.mark.parametrize("bad", [",", "=", '"', "\n"])
def test_a_devcontainer_mount_refuses_csv_characters_in_a_path(tmp_path: Path, bad: str
                                                                ) -> None:
    lab = write_lab(tmp_path / "lab", SPECS)
    src = tmp_path / f"x{bad}source=/etc{bad}readonly" / "work"
    src.mkdir(parents=True)
    plan = _plan(lab, [str(src)])
    with pytest.raises(LabError) as e:
        dc.document(plan, src, gpu=False)
    assert str(src) in e.value.message and "rename" in (e.value.fix or "")


def test_a_lab_folder_with_a_comma_gives_no_injected_mount(tmp_path: Path) -> None:
    """The volumes' sources are the lab folder's: a cloned lab named to inject a mount."""
    lab = write_lab(tmp_path / INJECTED, SPECS)
    src = tmp_path / "work"
    src.mkdir()
    with pytest.raises(LabError) as e:
        dc.document(_plan(lab, [str(src)]), src, gpu=False)
    assert INJECTED in e.value.message


@pytest.mark.parametrize("host", [INJECTED, "a=b", 'x"y', "/tmp/x,y"])
def test_volumes_yaml_refuses_a_host_with_csv_characters(tmp_path: Path, host: str) -> None:
    lab = write_lab(tmp_path / "lab", SPECS)
    (lab / "volumes.yaml").write_text(yaml.safe_dump(
        {"volumes": {"data": {"host": host, "container": "/inj"}}}))
    with pytest.raises(LabError) as e:
        load_lab(str(lab), environ={})
    assert e.value.file == str(lab / "volumes.yaml")
    assert "data.host" in str(e.value)


def test_compose_volumes_are_long_syntax_whatever_the_path(tmp_path: Path) -> None:
    """Compose's short syntax is SRC:DST:MODE: a ':' in a path would add a mount or a mode."""
    lab = write_lab(tmp_path / "x:/etc:rw", SPECS)
    svc = cp.service(_plan(lab, []), gpu=False)
    data = next(v for v in svc["volumes"] if v["target"] == "/data")
    assert data == {"type": "bind", "source": str(tmp_path / "x:/etc:rw" / "data"),
                    "target": "/data"}
    compose_file = tmp_path / "compose.yaml"  # the long syntax is the Compose spec's
    compose_file.write_text(yaml.safe_dump(cp.document({"nb": svc})))
    check = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                            "vendor.compose-spec", str(compose_file)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# --- 2. the learner's devcontainer.json --------------------------------------------------

NEW = {"name": "labctl nb", "image": "img", "remoteUser": "lab",
       "customizations": {"vscode": {"extensions": list(dc.EXTENSIONS)}}}


def _merge(tmp_path: Path, raw: bytes) -> dict:
    path = tmp_path / ".devcontainer" / "devcontainer.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw)
    dc.write(path, NEW)
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("raw", "words"), [
    (b"[1, 2]", "object"),
    (b'{"customizations": "x"}', "customizations"),
    (b'{"customizations": {"vscode": []}}', "customizations.vscode"),
    (b'{"customizations": {"vscode": {"extensions": "ms-python.python"}}}', "extensions"),
    (b'{"a": "\xff\xfe"}', "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": -Infinity}', "Infinity"),
    (b'{"a": ' + b"9" * 5000 + b"}", "number"),
    (b'{"a": 1} /* unterminated', "comment"),
    (b'{"a": "unterminated}', "JSON"),
])
def test_a_devcontainer_json_that_cannot_be_merged_is_a_lab_error(tmp_path: Path, raw: bytes,
                                                                  words: str) -> None:
    with pytest.raises(LabError) as e:
        _merge(tmp_path, raw)
    assert e.value.file and e.value.file.endswith("devcontainer.json")
    assert words in str(e.value) and e.value.fix


def test_jsonc_comments_and_trailing_commas_go_strings_stay(tmp_path: Path) -> None:
    raw = (b'// the learner\'s\n{\n  "a": "x,]y,}z // not a comment /* nor this */",\n'
           b'  /* block */ "b": [1, 2, /* c */ ],\n  "c": {"d": "e\\",]",},\n'
           b'  "url": "http://host//path",\n}\n')
    out = _merge(tmp_path, raw)
    assert out["a"] == "x,]y,}z // not a comment /* nor this */"
    assert out["b"] == [1, 2]
    assert out["c"] == {"d": 'e",]'}
    assert out["url"] == "http://host//path"
    assert out["image"] == "img"


def test_a_lone_surrogate_is_kept(tmp_path: Path) -> None:
    out = _merge(tmp_path, b'{"a": "\\ud800"}')
    assert out["a"] == "\ud800"


def test_the_temporary_file_is_never_written_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    folder = tmp_path / ".devcontainer"
    folder.mkdir()
    (folder / ".devcontainer.json.labctl-tmp").symlink_to(victim)
    dc.write(folder / "devcontainer.json", NEW)
    assert victim.read_text() == "mine\n"
    assert json.loads((folder / "devcontainer.json").read_text())["image"] == "img"


def test_a_devcontainer_json_that_is_a_link_is_neither_read_nor_written(tmp_path: Path
                                                                       ) -> None:
    """A cloned project's link to ~/.docker/config.json would copy its secrets into the
    project (and so into git)."""
    victim = tmp_path / "config.json"
    victim.write_text('{"auths": {"registry": {"auth": "c2VjcmV0"}}}')
    folder = tmp_path / ".devcontainer"
    folder.mkdir()
    (folder / "devcontainer.json").symlink_to(victim)
    with pytest.raises(LabError) as e:
        dc.write(folder / "devcontainer.json", NEW)
    assert "link" in e.value.message
    assert (folder / "devcontainer.json").is_symlink() and "auths" in victim.read_text()


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
              st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=20), st.sampled_from([",]", ",}", "//", "/*", "*/", '"', "\\"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=15,
)
DOCS = st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(
    [*dc.MANAGED, "customizations"])), JSON_VALUES, max_size=6)


@FUZZ
@given(doc=DOCS, comment=st.booleans(), trailing=st.booleans())
def test_merge_fuzz_documents_keep_the_learners_keys(tmp_path_factory, doc: dict,
                                                      comment: bool, trailing: bool) -> None:
    tmp = tmp_path_factory.mktemp("dc")
    text = json.dumps(doc, indent=1)
    if comment:
        text = "// mine\n" + text.replace("\n", " /* c */\n", 1)
    if trailing and text.endswith("}") and len(doc):
        text = text[:-1].rstrip() + ",\n}"
    try:
        out = _merge(tmp, text.encode("utf-8", "surrogatepass"))
    except LabError as e:
        assert e.file and e.message
        return
    for key, value in doc.items():
        if key not in dc.MANAGED and key != "customizations":
            assert json.dumps(out[key], sort_keys=True) == json.dumps(value, sort_keys=True)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), st.text(
    alphabet='{}[]",:/*\n 01aNI\\', max_size=120).map(lambda s: s.encode())))
def test_merge_fuzz_bytes(tmp_path_factory, raw: bytes) -> None:
    try:
        _merge(tmp_path_factory.mktemp("dc"), raw)
    except LabError as e:
        assert e.file and e.message


# --- 3. YAML numbers Python cannot convert -----------------------------------------------

def test_a_huge_integer_in_a_spec_is_a_lab_error(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("pip: [six]\nshm: " + "9" * 5000 + "\n")
    with pytest.raises(LabError) as e:
        load_spec("x", tmp_path)
    assert e.value.file == str(tmp_path / "x.yaml") and "line 2" in e.value.message


@pytest.mark.parametrize(("name", "text"), [
    ("volumes.yaml", "volumes:\n  data:\n    host: {}\n    container: /data\n"),
    ("labctl.yaml", "# settings\n\nbind: {}\n"),
])
def test_a_huge_integer_in_a_lab_file_is_a_lab_error(tmp_path: Path, name: str, text: str
                                                     ) -> None:
    lab = write_lab(tmp_path / "lab", SPECS)
    (lab / name).write_text(text.format("9" * 5000))
    with pytest.raises(LabError) as e:
        load_lab(str(lab), environ={})
    assert e.value.file == str(lab / name) and "line 3" in e.value.message


def test_the_cli_says_so_without_a_traceback(tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "lab", {"nb": "pip: [six]\npython: " + "1" * 4400 + "\n"})
    res = labctl("render", "nb", "--lab", str(lab))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "nb.yaml" in res.stderr and "line 2" in res.stderr


# --- 4. rich markup in names -------------------------------------------------------------

def test_init_prints_a_folder_with_markup_as_it_is(tmp_path: Path) -> None:
    res = labctl("init", "ld[/]y", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "ld[/]y" in res.stdout


def test_add_prints_a_requirement_with_markup_as_it_is(tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "l[/]ab", {"nb": "pip: [six]\n"})
    res = labctl("add", "nb", "x[bold]==1", "--no-build", "--lab", str(lab))
    assert "Traceback" not in res.stderr
    assert "extras += x[bold]==1" in res.stderr
    assert load_spec("nb", lab / "images").extras == ["x[bold]==1"]


def test_list_prints_a_lab_folder_with_markup_as_it_is(tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "ld[/]y", {"nb": "pip: [six]\ndescription: '[red]mine'\n"})
    res = labctl("list", "--lab", str(lab))  # no engine needed: the state is then unknown
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert f"lab {lab}" in res.stdout and "[red]mine" in res.stdout


def test_an_error_naming_markup_prints_it(tmp_path: Path) -> None:
    res = labctl("render", "nb", "--lab", str(tmp_path / "[bold]x[/]"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "[bold]x[/]" in res.stderr


# --- 5. `labctl add` edits any valid spec, or says what to edit by hand ------------------

def _add(tmp_path: Path, text: str, packages: list[str], newline: str = "\n") -> str:
    text = text.replace("\n", newline)
    path = tmp_path / "x.yaml"
    path.write_bytes(text.encode())
    before = load_spec("x", tmp_path)
    new = add_extras(yamlfile.read(path), text, packages, [])
    path.write_bytes(new.encode())
    after = load_spec("x", tmp_path)
    assert after.extras == [*before.extras, *packages]
    assert after.pip == before.pip
    return new


@pytest.mark.parametrize("text", [
    "pip: [six]\nextras: [idna==3.7,\n   attrs]  # two lines\n# end\n",
    "pip: [six]\nextras: [\n  idna==3.7,\n  attrs,\n]\njupyter: false\n",
    "pip: [six]\nextras: [\n]\n",
    "pip: &p [six, idna]\nextras: *p\n",
    "pip: &p\n  - six\nextras: *p   # the same\n",
    "pip: [six]\nextras: &e\n  - idna==3.7\n",
    "pip: [six]\nextras:\n- idna==3.7\n- 'attrs'\n",
    "pip: [six]\nextras:\n  - >-\n    idna==3.7\n  # more\n",
    "\ufeffpip: [six]\nextras: [idna]\n",
])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_add_edits_valid_specs_in_place(tmp_path: Path, text: str, newline: str) -> None:
    new = _add(tmp_path, text, ["seaborn==0.13.2", "rich>=13,<14"], newline)
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            assert line in new  # comments kept
    if newline == "\r\n":
        assert "\n" not in new.replace("\r\n", "")  # every line ending kept CRLF


@pytest.mark.parametrize("text", ["extras: ~  # none yet\r\n",
                                  "extras:\r\n# none yet\r\njupyter: false\r\n"])
def test_an_empty_extras_key_gets_the_packages(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(text.encode())
    new = add_extras(yamlfile.read(path), text, ["seaborn", "x[bold]==1"], [])
    assert yamlfile.parse(path, new).data["extras"] == ["seaborn", "x[bold]==1"]
    assert "# none yet\r\n" in new and "\n" not in new.replace("\r\n", "")


REQS = st.sampled_from(["six", "idna==3.7", "rich>=13,<14", "x[bold]==1", "a~=1.0",
                        "b!=2", "c; python_version<'3.12'", "d==1.*", "e @ https://x/e.whl"])


@settings(FUZZ, max_examples=max(20, EXAMPLES // 3))
@given(have=st.lists(REQS, max_size=4), add=st.lists(REQS, min_size=1, max_size=3),
       layout=st.sampled_from(["flow", "flow-lines", "block", "block-0", "anchor", "alias"]),
       indent=st.sampled_from(["  ", "    ", " "]), comment=st.booleans(),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_add_fuzz_layouts(tmp_path_factory, have: list[str], add: list[str], layout: str,
                          indent: str, comment: bool, newline: str) -> None:
    """Every usual layout of a valid extras: list is edited in place, to the packages wanted."""
    quoted = ["'" + r.replace("'", "''") + "'" for r in have]
    c = "  # note" if comment else ""
    body = {
        "flow": f"extras: [{', '.join(quoted)}]{c}\n",
        "flow-lines": "extras: [" + "".join(f"\n{indent}{q},{c}" for q in quoted) + "\n]\n",
        "block": "extras:\n" + "".join(f"{indent}- {q}{c}\n" for q in quoted),
        "block-0": "extras:\n" + "".join(f"- {q}{c}\n" for q in quoted),
        "anchor": "extras: &e\n" + "".join(f"{indent}- {q}{c}\n" for q in quoted),
        "alias": f"pip_nodeps: &n [{', '.join(quoted)}]\nextras: *n{c}\n",
    }[layout]
    if not have and layout in ("block", "block-0", "anchor"):
        body = "extras: []\n"
    text = ("# mine\npip: [six]\n" + body + "jupyter: false\n").replace("\n", newline)
    tmp = tmp_path_factory.mktemp("add")
    path = tmp / "x.yaml"
    path.write_bytes(text.encode())
    new = add_extras(yamlfile.read(path), text, add, [])
    path.write_bytes(new.encode())
    spec = load_spec("x", tmp)
    assert spec.extras == [*have, *add] and spec.pip == ["six"] and spec.jupyter is not None
    assert new.startswith("# mine" + newline)
    if newline == "\r\n":
        assert "\n" not in new.replace("\r\n", "")


def test_a_spec_it_cannot_edit_in_place_is_a_lab_error_not_a_corruption(tmp_path: Path
                                                                        ) -> None:
    for text in ("{pip: [six]}\n", "pip: [six]\n...\n",
                 "pip: [six]\nextras: &e [idna]\npip_nodeps: *e\n"):
        path = tmp_path / "x.yaml"
        path.write_text(text)
        with pytest.raises(LabError) as e:
            add_extras(yamlfile.read(path), text, ["seaborn"], [])
        assert "extras" in str(e.value) and "by hand" in (e.value.fix or "")


def test_merged_extras_get_a_key_of_their_own(tmp_path: Path) -> None:
    _add(tmp_path, "pip: &p [six]\n<<: {extras: [idna]}\n", ["seaborn"])


def test_add_under_python_O_never_leaves_a_broken_spec(tmp_path: Path) -> None:
    """`python -O` drops asserts: the spec file is right, or untouched and an error said."""
    text = "pip: [six]\r\nextras: [idna,\r\n   attrs]\r\n"
    lab = write_lab(tmp_path / "lab", {})
    (lab / "images" / "nb.yaml").write_bytes(text.encode())
    res = subprocess.run([sys.executable, "-O", "-m", "labctl", "add", "nb", "seaborn",
                          "--no-build", "--lab", str(lab)], capture_output=True, text=True,
                         timeout=300)
    assert "Traceback" not in res.stderr
    raw = (lab / "images" / "nb.yaml").read_bytes()
    assert load_spec("nb", lab / "images").extras == ["idna", "attrs", "seaborn"]
    assert raw.count(b"\r\n") == raw.count(b"\n")


# --- 6. files holding a secret are 0600 -------------------------------------------------

def test_export_k8s_writes_the_secret_0600(tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "lab", SPECS)
    out = tmp_path / "nb.yaml"
    out.write_text("old\n")
    out.chmod(0o644)
    res = labctl("export", "k8s", "nb", "-o", str(out), "--lab", str(lab))
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert any(d and d["kind"] == "Secret" for d in yaml.safe_load_all(out.read_text()))


def test_export_k8s_replaces_a_link_rather_than_writing_through_it(tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "lab", SPECS)
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    victim.chmod(0o644)
    (tmp_path / "out.yaml").symlink_to(victim)
    res = labctl("export", "k8s", "nb", "-o", str(tmp_path / "out.yaml"), "--lab", str(lab))
    assert res.returncode == 0, res.stderr
    assert victim.read_text() == "mine\n"
    assert stat.S_IMODE((tmp_path / "out.yaml").lstat().st_mode) == 0o600
