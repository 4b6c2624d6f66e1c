"""Build time, after the lab's packages: matplotlib's font list, made once for the lab
user, so that the first plot is quick and finds the CJK font (a shared font cache made by
an older image would not list it). Nothing happens where matplotlib is not installed."""

import importlib.util
import os
import pwd
import subprocess
import sys

if importlib.util.find_spec("matplotlib") is not None:
    lab = pwd.getpwnam("lab")
    env = {**os.environ, "HOME": lab.pw_dir, "MPLBACKEND": "Agg"}
    env.pop("MPLCONFIGDIR", None)
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env,
                   check=True)
    for sub in (".cache", ".config"):
        path = os.path.join(lab.pw_dir, sub)
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, lab.pw_uid, lab.pw_gid)
