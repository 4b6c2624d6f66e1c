"""Imported first by the command line, before anything builds a pydantic model or imports
docker. Here, not in the package, so a program that imports labctl keeps its own.

- pydantic's search for plugins in the entry points of every installed package took a
  tenth of a second of every command, for plugins labctl never uses;
- docker-py imports paramiko for ssh:// engines whenever docker is imported: a fifth of a
  second of every command. labctl reaches ssh engines through the system's ssh client,
  so paramiko is imported only when something of it is used.
"""

import importlib
import importlib.util
import os
import sys
import types

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


class _OnFirstUse(types.ModuleType):
    """Stands in for a module until one of its names is used, then imports it and becomes
    it. (The stdlib's LazyLoader would import it at the `import` statement, which reads
    __spec__.)"""

    def __getattr__(self, attr: str) -> object:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        self.__class__ = types.ModuleType  # its names are its own now: no second import
        return getattr(real, attr)


_spec = None if "paramiko" in sys.modules else importlib.util.find_spec("paramiko")
if _spec is not None:
    sys.modules["paramiko"] = _OnFirstUse("paramiko")
    sys.modules["paramiko"].__spec__ = _spec  # find_spec("paramiko") keeps working
