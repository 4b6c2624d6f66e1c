"""Lock files without an engine: parsing, writing, input hashes, stale locks, the
constraints a lock adds to each layer, diffs, and `labctl build --locked`'s policy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labctl.config import lockfile
from labctl.config.lab import Lab, init_lab, load_lab
from labctl.config.lockfile import Change, diff_versions, inputs_hash, torch_inputs_hash
from labctl.config.spec import ImageSpec
from labctl.errors import LabError
from labctl.image.render import render
from labctl.lock.policy import lock_policy

H = {c: f"sha256:{c * 64}" for c in "abcdef"}
# What the resolver container prints (uv pip compile --no-header output, trimmed).
FULL = f"""\
certifi==2024.8.30 \\
    --hash={H['a']}
    # via requests
idna==3.7 \\
    --hash={H['b']} \\
    --hash={H['c']}
    # via requests
numpy==1.26.4 \\
    --hash={H['d']}
    # via
    #   -r spec-pip.txt
    #   torch
requests==2.31.0 \\
    --hash={H['e']}
    # via -r spec-pip.txt
six==1.16.0
    # via -r spec-extras.txt
torch==2.10.0 \\
    --hash={H['f']}
    # via -r spec-torch.txt
"""
OUTPUT = f"""\
### labctl-lock:full
{FULL}### labctl-lock:torchfull
numpy==2.1.0 \\
    --hash={H['c']}
    # via torch
torch==2.10.0 \\
    --hash={H['f']}
    # via -r spec-torch.txt
### labctl-lock:pip
certifi==2024.8.30
idna==3.7
numpy==1.26.4
requests==2.31.0
torch==2.10.0
### labctl-lock:nodeps
d2l==0.17.6 \\
    --hash={H['a']}
    # via -r spec-nodeps.txt
### labctl-lock:meta
python: 3.11.2 (x86_64, glibc 2.36)
resolver: uv 0.13.9
"""


def spec(**kw: object) -> ImageSpec:
    data: dict[str, object] = {
        "name": "small", "torch": {"version": "2.10.0"}, "pip": ["requests<2.32", "numpy<2"],
        "pip_nodeps": ["d2l==0.17.6"], "extras": ["six"],
    }
    data.update(kw)
    return ImageSpec(**data)


def made(s: ImageSpec | None = None) -> lockfile.LockFile:
    return lockfile.assemble(s or spec(), lockfile.split_output(OUTPUT))


# --- parsing and writing ------------------------------------------------------------------


def test_parse_pins_reads_hashes_and_notes() -> None:
    pins = {p.name: p for p in lockfile.parse_pins(FULL)}
    assert pins["idna"].version == "3.7" and pins["idna"].hashes == (H["b"], H["c"])
    assert pins["six"].hashes == ()
    assert pins["numpy"].notes == ("# via", "#   -r spec-pip.txt", "#   torch")


@pytest.mark.parametrize("line", ["requests>=2", "requests", "numpy==1.*"])
def test_a_pin_is_one_exact_version(line: str) -> None:
    with pytest.raises(ValueError, match="not pinned"):
        lockfile.parse_pin(line)


def test_assemble_splits_the_layers_and_names_the_spec() -> None:
    lock = made()
    names = {s: [p.name for p in pins] for s, pins in lock.sections.items()}
    assert names == {
        # The torch layer is resolved from torch alone (the same for every spec with this
        # torch); the pip layer moves numpy to the spec's numpy<2.
        "torch": ["numpy", "torch"],
        "pip": ["certifi", "idna", "numpy", "requests"],
        "pip_nodeps": ["d2l"],
        "extras": ["six"],
    }
    assert lock.python.startswith("3.11.2") and lock.resolver == "uv 0.13.9"
    assert lock.inputs == inputs_hash(spec()) and lock.torch_inputs == torch_inputs_hash(spec())
    assert lock.sections["torch"][0].version == "2.1.0"
    numpy = lock.sections["pip"][2]
    assert numpy.version == "1.26.4"
    assert "#   images/small.yaml (pip)" in numpy.notes  # not the resolver's temp file name


def test_text_round_trips(tmp_path: Path) -> None:
    lock = made()
    text = lock.text()
    assert text.startswith("# labctl lock file for images/small.yaml")
    assert "# inputs: " + inputs_hash(spec()) in text and "# [pip_nodeps]" in text
    again = lockfile.parse_lock(text, tmp_path / "small.lock")
    assert again.sections == lock.sections and again.inputs == lock.inputs
    assert again.versions() == {"numpy": "1.26.4", "torch": "2.10.0", "certifi": "2024.8.30",
                                "idna": "3.7", "requests": "2.31.0", "d2l": "0.17.6",
                                "six": "1.16.0"}
    assert again.text() == text
    assert lock.hashed() == 7


@pytest.mark.parametrize("text", ["", "requests==2.31.0\n", "# labctl-lock: 1\n# [pip]\nbad ===\n",
                                  "# labctl-lock: 9\n# inputs: x\n"])
def test_a_broken_lock_names_the_file_and_the_fix(tmp_path: Path, text: str) -> None:
    with pytest.raises(LabError) as info:
        lockfile.parse_lock(text, tmp_path / "small.lock")
    assert info.value.file == str(tmp_path / "small.lock")
    assert "labctl lock small" in (info.value.fix or "")


def test_preferences_are_the_old_pins() -> None:
    prefs = lockfile.preferences(made())
    assert f"idna==3.7 --hash={H['b']} --hash={H['c']}\n" in prefs and "d2l" not in prefs
    assert lockfile.preferences(made(), nodeps=True) == f"d2l==0.17.6 --hash={H['a']}\n"


# --- input hashes and staleness -----------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"pip": ["requests<2.33", "numpy<2"]}, {"extras": []}, {"pip_nodeps": ["d2l==1.0.3"]},
    {"python": "3.12"}, {"torch": {"version": "2.9.1"}},
    {"index_url": "https://mirror.example/simple"},
    {"extra_index_urls": ["https://download.pytorch.org/whl/cu128"]},
])
def test_inputs_hash_follows_the_package_inputs(change: dict[str, object]) -> None:
    assert inputs_hash(spec(**change)) != inputs_hash(spec())


@pytest.mark.parametrize("change", [
    {"description": "x"}, {"apt": ["git"]}, {"env": {"A": "1"}}, {"volumes": []},
    {"jupyter": {"enabled": False}},
])
def test_other_keys_leave_the_lock_current(change: dict[str, object]) -> None:
    assert inputs_hash(spec(**change)) == inputs_hash(spec())
    assert lockfile.state(spec(**change), made()) == "locked"


def test_torch_inputs_ignore_the_lab_packages() -> None:
    assert torch_inputs_hash(spec(pip=["rich"])) == torch_inputs_hash(spec())
    assert torch_inputs_hash(spec(torch={"version": "2.9.1"})) != torch_inputs_hash(spec())


def test_state() -> None:
    assert lockfile.state(spec(), None) == "none"
    assert lockfile.state(spec(), made()) == "locked"
    assert lockfile.state(spec(extras=["six", "rich"]), made()) == "stale"


# --- what a lock adds to a build ----------------------------------------------------------


def lines(data: bytes) -> list[str]:
    return [line.split()[0] for line in data.decode().splitlines()]


def test_layers_get_their_pins_and_those_of_the_layers_before() -> None:
    sections, notes = lockfile.usable_pins(spec(), made())
    files = lockfile.layer_constraints(sections)
    assert notes == []
    assert lines(files["torch"]) == ["numpy==2.1.0", "torch==2.10.0"]
    # A later section's pin replaces the torch layer's (numpy 2.1.0 -> 1.26.4).
    assert lines(files["pip"]) == ["numpy==1.26.4", "torch==2.10.0",
                                   "certifi==2024.8.30", "idna==3.7", "requests==2.31.0"]
    assert lines(files["extras"]) == lines(files["pip"]) + ["six==1.16.0"]
    assert lines(files["pip_nodeps"]) == ["d2l==0.17.6"]
    assert f"--hash={H['b']} --hash={H['c']}" in files["pip"].decode()


def test_a_stale_lock_keeps_the_pins_that_still_fit() -> None:
    grown = spec(extras=["six", "rich"])
    sections, notes = lockfile.usable_pins(grown, made())
    assert sections == made().sections and notes == []


def test_a_stale_lock_drops_pins_the_spec_now_excludes() -> None:
    tighter = spec(pip=["requests<2.31", "numpy<2"])
    sections, notes = lockfile.usable_pins(tighter, made())
    assert "requests" not in {p.name for s in sections.values() for p in s}
    assert "idna" in {p.name for p in sections["pip"]}
    assert any("requests==2.31.0" in n and "requests<2.31" in n for n in notes)


def test_a_new_torch_drops_the_torch_pins() -> None:
    sections, notes = lockfile.usable_pins(spec(torch={"version": "2.9.1"}), made())
    assert sections["torch"] == [] and sections["pip"] == made().sections["pip"]
    assert any("torch" in n for n in notes)


def test_a_new_python_drops_the_lock() -> None:
    sections, notes = lockfile.usable_pins(spec(python="3.12"), made())
    assert all(not pins for pins in sections.values()) and "3.12" in notes[0]


# --- diffs --------------------------------------------------------------------------------


def test_diff_versions() -> None:
    old = {"numpy": "1.26.4", "Pandas": "2.2.0", "six": "1.16.0", "x": "1.0", "weird": "abc"}
    new = {"numpy": "2.0.0", "pandas": "2.1.0", "rich": "13.0", "x": "1.0", "weird": "abd"}
    assert diff_versions(old, new) == [
        Change("numpy", "1.26.4", "2.0.0", "upgraded"),
        Change("pandas", "2.2.0", "2.1.0", "downgraded"),
        Change("rich", None, "13.0", "added"),
        Change("six", "1.16.0", None, "removed"),
        Change("weird", "abc", "abd", "changed"),
    ]
    assert diff_versions(old, old) == []


def test_diff_against_a_lock_marks_what_the_lock_never_had() -> None:
    lock, image = {"six": "1.16.0"}, {"six": "1.16.0", "pip": "24.0"}
    assert diff_versions(lock, image, image_side="new") == [
        Change("pip", None, "24.0", "not locked")]
    assert diff_versions(image, lock, image_side="old")[0].kind == "not locked"


def test_parse_package_list() -> None:
    text = '[{"name": "PyYAML", "version": "6.0.1"}, {"name": "torch", "version": "2.10.0"}]'
    assert lockfile.parse_package_list(text) == {"pyyaml": "6.0.1", "torch": "2.10.0"}
    with pytest.raises(ValueError):
        lockfile.parse_package_list("Usage: pip ...")


# --- render and build use the lock --------------------------------------------------------


def locked_lab(root: Path, data: dict[str, object]) -> Lab:
    init_lab(root)
    (root / "labctl.yaml").write_text("")
    (root / "images" / "small.yaml").write_text(yaml.safe_dump(data))
    lab = load_lab(str(root), environ={})
    s = lab.spec("small")
    (root / "images" / "small.lock").write_text(made(s).text())
    return lab


SMALL = {"torch": {"version": "2.10.0"}, "pip": ["requests<2.32", "numpy<2"],
         "pip_nodeps": ["d2l==0.17.6"], "extras": ["six"]}


def test_render_holds_each_layer_to_the_lock(tmp_path: Path) -> None:
    lab = locked_lab(tmp_path / "lab", SMALL)
    ctx = render(lab, lab.spec("small"))
    assert ctx.lock_state == "locked"
    for layer in ("torch", "pip", "pip_nodeps", "extras"):
        assert f"-c /opt/labctl/lock-{layer}.txt " in ctx.dockerfile
        assert f"labctl/lock-{layer}.txt" in ctx.files
    # The lock is part of what the image is built from.
    before = ctx.digest
    (lab.images_dir / "small.lock").unlink()
    unlocked = render(lab, lab.spec("small"))
    assert unlocked.digest != before and unlocked.lock_state == "none"
    assert "lock-" not in unlocked.dockerfile


def test_a_stale_lock_keeps_the_torch_layer(tmp_path: Path) -> None:
    lab = locked_lab(tmp_path / "lab", SMALL)
    before = render(lab, lab.spec("small"))
    (lab.images_dir / "small.yaml").write_text(yaml.safe_dump({**SMALL, "extras": ["six", "rich"]}))
    after = render(lab, lab.spec("small"))
    assert after.lock_state == "stale"
    assert after.files["labctl/lock-torch.txt"] == before.files["labctl/lock-torch.txt"]
    assert after.files["labctl/lock-pip.txt"] == before.files["labctl/lock-pip.txt"]


def test_build_policy(tmp_path: Path) -> None:
    lab = locked_lab(tmp_path / "lab", SMALL)
    (lab.images_dir / "other.yaml").write_text("pip: [six]\n")
    locked = render(lab, lab.spec("small"))
    other = render(lab, lab.spec("other"))
    assert lock_policy(lab, [locked, other], locked=False) == []
    assert lock_policy(lab, [locked], locked=True) == []
    with pytest.raises(LabError) as info:
        lock_policy(lab, [locked, other], locked=True)
    assert "images/other.yaml has no lock file" in info.value.details[0]
    assert "labctl lock other" in (info.value.fix or "")

    (lab.images_dir / "small.yaml").write_text(yaml.safe_dump({**SMALL, "pip": ["requests"]}))
    stale = render(lab, lab.spec("small"))
    warnings = lock_policy(lab, [stale], locked=False)
    assert "images/small.lock is stale: images/small.yaml changed" in warnings[0]
    assert "labctl lock small" in warnings[0]
    with pytest.raises(LabError) as info:
        lock_policy(lab, [stale], locked=True)
    assert "images/small.yaml changed since it was locked" in info.value.details[0]


def test_shipped_specs_have_current_locks() -> None:
    from labctl import resources
    from labctl.config.spec import load_spec, spec_names

    images = resources.default_images_dir()
    names = spec_names(images)
    assert {"d2l", "fastai", "yolo-cpu", "yolo-gpu", "yolov5", "tf", "tf-gpu"} <= set(names)
    for name in names:
        s = load_spec(name, images)
        lock = lockfile.read_lock(images / f"{name}.lock", name)
        assert lockfile.state(s, lock) == "locked", f"run `labctl lock {name}` in the repository"
        assert lock is not None and lock.hashed() == len(lock.pins())
