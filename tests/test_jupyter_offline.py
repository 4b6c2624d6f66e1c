"""A lab's JupyterLab calls out to no one at start or on its first page: no news feed (and
no "get notified about official Jupyter news?" question), no update check, no PyPI
listing in the extension manager. The settings are files of labctl's image folder, put
where Jupyter reads them by the image's runtime layer."""

from __future__ import annotations

import json
from pathlib import Path

from labctl import resources
from labctl.config.lab import init_lab, load_lab
from labctl.config.spec import spec_names
from labctl.image.render import render

SERVER_CONFIG = "/opt/venv/etc/jupyter/jupyter_server_config.json"
OVERRIDES = "/opt/venv/share/jupyter/lab/settings/overrides.json"


def test_every_lab_image_carries_jupyterlab_offline_settings(tmp_path: Path) -> None:
    init_lab(tmp_path)
    (tmp_path / "labctl.yaml").write_text("")
    lab = load_lab(str(tmp_path), environ={}, host_root=tmp_path / "no-host")
    for name in spec_names(resources.default_images_dir()):
        ctx = render(lab, lab.spec(name))
        assert f"/opt/labctl/lib/jupyter_server_config.json {SERVER_CONFIG}" in ctx.dockerfile
        assert f"/opt/labctl/lib/jupyterlab_overrides.json {OVERRIDES}" in ctx.dockerfile
        server = json.loads(ctx.files["labctl/image/jupyter_server_config.json"])
        # LabApp: news_url None turns the news handler and the page's news off; the
        # update check never asks pypi.org; the read-only manager lists installed ones only
        assert server["LabApp"] == {"news_url": None,
                                    "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                                    "extension_manager": "readonly"}, name
        assert "tensorboard" in server["ServerProxy"]["servers"]  # still there
        overrides = json.loads(ctx.files["labctl/image/jupyterlab_overrides.json"])
        assert overrides["@jupyterlab/apputils-extension:notification"] == {
            "fetchNews": "false", "checkForUpdates": False}, name
