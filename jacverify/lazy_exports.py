"""Module attributes and modules loaded on first use, so that importing a package stays cheap."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str,
    exports: Mapping[str, str],
    namespace: dict,
    on_load: Callable[[], Any] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: each name of ``exports`` is imported
    from the module it maps to when first read, then kept in ``namespace`` (the package's
    ``globals()``); ``on_load`` runs after each such import."""

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        namespace[name] = value
        if on_load is not None:
            on_load()
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__



class _RunsOnFirstRead(types.ModuleType):
    """A module whose code has not run yet: reading an attribute it lacks runs the code (in
    this module object, which becomes a plain module) and reads the attribute after."""

    def __getattr__(self, attribute: str) -> Any:
        self.__class__ = types.ModuleType
        try:
            self.__spec__.loader.exec_module(self)
        except BaseException:  # as a failed import: the module is gone, the error raised
            sys.modules.pop(self.__name__, None)
            raise
        return getattr(self, attribute)


def load_on_first_use(name: str) -> bool:
    """Make ``import name`` give a module whose code runs only when an attribute it defines is
    first read (its parent packages are imported now). For modules that other libraries
    import without using them in this process (Keras imports ``matplotlib.pyplot`` for its
    plotting functions). Returns ``False``, and changes nothing, when the module is already
    imported or cannot be found."""
    if name in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return False
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _RunsOnFirstRead
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return True
