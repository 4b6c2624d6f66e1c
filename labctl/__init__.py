"""labctl: build and run Docker learning labs for deep learning."""

import os

__version__ = "0.1.0"

# pydantic looks for plugins in the entry points of every installed package the first time
# it builds a model: a tenth of a second of every labctl command, for plugins labctl never
# uses.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
