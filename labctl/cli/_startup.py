"""Imported first by the command line, before anything builds a pydantic model: pydantic's
search for plugins in the entry points of every installed package took a tenth of a
second of every command, for plugins labctl never uses. Here, not in the package, so a
program that imports labctl keeps its own plugins."""

import os

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
