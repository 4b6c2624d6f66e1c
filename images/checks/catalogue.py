"""labctl's dataset catalogue says what the libraries in this image say: d2l's DATA_HUB,
torchvision's FashionMNIST resources and weight URLs, fastai's URLs and download checks,
Ultralytics' release assets. Entries of libraries this image lacks are skipped."""

import importlib
import importlib.util
import inspect
import json
from pathlib import Path

entries = json.loads(Path("/opt/labctl/lib/datasets.json").read_text())["entries"]
problems, checked, flavour_only = [], [], []


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def expect(name: str, what: str, got: object, want: object) -> None:
    checked.append(name)
    if got != want:
        problems.append(f"{name}: {what}: the library says {got!r}, the catalogue {want!r}")


for name, e in entries.items():
    kind, key, files = e["library"]["kind"], e["library"]["key"], e["files"]
    if kind == "d2l" and have("d2l"):
        d2l = importlib.import_module("d2l.torch" if have("torch") else "d2l.tensorflow")
        if key not in d2l.DATA_HUB and not have("torch"):
            # d2l.tensorflow registers only the chapters its module code uses; the TF
            # notebooks register the rest themselves, with the same URLs as d2l.torch.
            flavour_only.append(name)
            continue
        expect(name, "DATA_HUB", d2l.DATA_HUB.get(key), (files[0]["urls"][0], files[0]["sha1"]))
    elif kind == "torchvision-dataset" and have("torchvision"):
        cls = getattr(importlib.import_module("torchvision.datasets"), key)
        expect(name, "resources", [(f, md5) for f, md5 in cls.resources],
               [(f["name"], f["md5"]) for f in files])
        expect(name, "urls", [[m + f for m in cls.mirrors] for f, _ in cls.resources],
               [f["urls"] for f in files])
    elif kind == "torchvision-weights" and have("torchvision"):
        enum, member = key.split(".")
        url = getattr(getattr(importlib.import_module("torchvision.models"), enum), member).url
        expect(name, "url", url, files[0]["urls"][0])
        expect(name, "sha256 prefix", url.rsplit("-", 1)[-1].split(".")[0],
               files[0]["sha256_prefix"])
    elif kind == "fastai" and have("fastai"):
        import fastai.data
        from fastai.data.external import URLs
        from fastdownload import read_checks

        url = getattr(URLs, key)
        expect(name, "url", url, files[0]["urls"][0])
        checks = read_checks(Path(fastai.data.__file__).parent / "download_checks.py")
        # fastai's check is (size, md5 of the first MiB); an entry without md5_first_mib
        # makes no claim about it (its size may come from elsewhere)
        mine = ((files[0]["size"], files[0]["md5_first_mib"]) if "md5_first_mib" in files[0]
                else None)
        expect(name, "download check", checks.get(url), mine)
    elif kind == "ultralytics-asset" and have("ultralytics"):
        from ultralytics.utils import downloads

        release = inspect.signature(downloads.attempt_download_asset).parameters["release"]
        expect(name, "url", f"https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/"
               f"download/{release.default}/{key}", files[0]["urls"][0])
        expect(name, "a release asset", key in downloads.GITHUB_ASSETS_NAMES, True)
    elif kind == "ultralytics-dataset" and have("ultralytics"):
        import yaml
        from ultralytics.cfg import get_cfg  # noqa: F401  (the package's cfg folder)
        from ultralytics.utils import ROOT

        cfg = yaml.safe_load((ROOT / "cfg" / "datasets" / key).read_text())
        expect(name, "download", cfg["download"], files[0]["urls"][0])

print(f"checked {len(set(checked))} catalogue entries against this image's libraries"
      + (f"; {len(flavour_only)} d2l entries are not in d2l.tensorflow" if flavour_only else ""))
assert checked, "no library of the catalogue is in this image"
assert not problems, "\n".join(problems)
print("catalogue check passed")
